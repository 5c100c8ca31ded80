import pytest
import torch
from torch import nn

pytest.importorskip("accelerate")
from transformers import Trainer, TrainerCallback, TrainingArguments  # noqa: E402

from greenprof.integrations.transformers import GreenprofCallback  # noqa: E402
from greenprof.sensors import ReplaySensor  # noqa: E402
from greenprof.session import Session  # noqa: E402


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 1)

    def forward(self, x, labels=None):
        out = self.lin(x).squeeze(-1)
        loss = nn.functional.mse_loss(out, labels)
        return {"loss": loss, "logits": out}


class Data(torch.utils.data.Dataset):
    def __len__(self):
        return 32

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        return {"x": torch.randn(4, generator=g), "labels": torch.tensor(float(i % 3))}


class Seen(TrainerCallback):
    def __init__(self):
        self.logs = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.logs.append(dict(logs or {}))


def test_trainer_logs_gain_energy_and_the_run_directory_is_written(tmp_path):
    seen = Seen()
    sensor = ReplaySensor([0.0, 3600.0], [0.0, 40.0 * 3600.0], name="const")
    callback = GreenprofCallback(out=tmp_path / "run", sensors=[sensor], interval_s=0.002)
    args = TrainingArguments(
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=4,
        max_steps=8,
        logging_steps=4,
        eval_strategy="steps",
        eval_steps=8,
        report_to=[],
        use_cpu=True,
        save_strategy="no",
        disable_tqdm=True,
    )
    trainer = Trainer(
        model=Tiny(),
        args=args,
        train_dataset=Data(),
        eval_dataset=Data(),
        callbacks=[seen, callback],
    )
    trainer.train()
    logged = [log for log in seen.logs if "energy_j" in log]
    assert len(logged) >= 2  # the reporting callback before ours saw the figures
    first = logged[0]
    assert first["energy_j"] > 0
    assert first["energy_j_per_step"] == pytest.approx(first["energy_j"] / 4)
    assert first["energy_j_per_sample"] == pytest.approx(first["energy_j"] / 16)
    session = Session.load(tmp_path / "run")
    assert (tmp_path / "run" / "report.html").is_file()
    assert session.meta["steps"] == 8
    assert "eval" in set(session.layers()["region"])
    assert callback.session is not None
