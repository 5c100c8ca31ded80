"""torch.compile and PyTorch's fused fast paths: what the hooks see, and what the session says."""

import pytest
import torch
import torch._dynamo
from torch import nn
from torch._dynamo.testing import CompileCounter

import greenprof


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc = nn.Sequential(nn.Linear(8, 8), nn.ReLU())
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        return self.head(self.enc(x))


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    yield
    torch._dynamo.reset()


def _train(model: nn.Module, steps: int) -> None:
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn(4, 8)
    for _ in range(steps):
        model(x).sum().backward()
        opt.step()
        opt.zero_grad()


def _compiles(profiled: bool) -> tuple[int, int, dict]:
    """Frames compiled, graphs' ops and graph breaks of three compiled training steps."""
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    counter = CompileCounter()
    model = Net()
    compiled = torch.compile(model, backend=counter)
    if profiled:
        with greenprof.profile(calibrate=False, sensors=[]):
            _train(compiled, 3)
    else:
        _train(compiled, 3)
    breaks = dict(torch._dynamo.utils.counters["graph_break"])
    return counter.frame_count, counter.op_count, breaks


@pytest.mark.filterwarnings("ignore:Using `torch.compile\\(module\\)`")
def test_profiling_a_compiled_model_breaks_no_graph_and_compiles_nothing_more():
    plain = _compiles(profiled=False)
    assert plain[0] == 1 and not plain[2]
    assert _compiles(profiled=True) == plain


@pytest.mark.filterwarnings("ignore:Using `torch.compile\\(module\\)`")
def test_a_compiled_model_is_one_row_under_the_users_names_with_a_warning():
    compiled = torch.compile(Net(), backend="aot_eager")  # its graphs run as fx GraphModules
    with greenprof.profile(calibrate=False, sensors=[]) as prof:
        _train(compiled, 2)
    layers = prof.session.layers()
    modules = layers[layers["phase"].isin(["forward", "backward"])]
    assert set(zip(modules["module"], modules["type"], strict=True)) == {("", "Net")}
    assert (modules["calls"] == 2).all()
    assert prof.session.meta["inconsistencies"] == 0
    assert any("ran compiled by torch.compile" in w for w in prof.session.meta["warnings"])


@pytest.mark.filterwarnings("ignore:Using `torch.compile\\(module\\)`")
def test_a_compiled_submodule_keeps_the_names_of_the_original_model():
    model = Net()
    model.enc = torch.compile(model.enc, backend=CompileCounter())
    with greenprof.profile(calibrate=False, sensors=[]) as prof:
        model(torch.randn(4, 8))
    layers = prof.session.layers()
    forward = layers[layers["phase"] == "forward"]
    assert dict(zip(forward["module"], forward["type"], strict=True)) == {
        "": "Net",
        "enc": "Sequential",
        "head": "Linear",
    }
    assert not layers["module"].str.contains("_orig_mod").any()
    warnings = [w for w in prof.session.meta["warnings"] if "torch.compile" in w]
    assert len(warnings) == 1 and warnings[0].startswith("enc ran compiled")


@pytest.mark.filterwarnings("ignore:Using `torch.compile\\(module\\)`")
def test_a_submodule_excluded_from_compilation_keeps_its_layer_rows():
    model = Net()
    model.enc = torch.compiler.disable(model.enc)
    compiled = torch.compile(model, backend=CompileCounter())
    with greenprof.profile(calibrate=False, sensors=[]) as prof:
        compiled(torch.randn(4, 8))
    forward = prof.session.layers().query("phase == 'forward'")
    assert {"", "enc", "enc.0", "enc.1"} <= set(forward["module"])
    warning = next(w for w in prof.session.meta["warnings"] if "torch.compile" in w)
    assert warning.startswith("(root) ran compiled")  # enc runs eagerly: not listed


def _encoder() -> nn.Module:
    layer = nn.TransformerEncoderLayer(d_model=16, nhead=2, dim_feedforward=32, batch_first=True)
    return nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False).eval()


def _fused_warnings(session) -> list[str]:
    return [w for w in session.meta["warnings"] if "fused fast path" in w]


def test_the_fused_encoder_fast_path_is_said_to_hide_sublayers():
    model = _encoder()
    with greenprof.profile(calibrate=False, sensors=[]) as prof, torch.no_grad():
        model(torch.randn(2, 5, 16))
    names = set(prof.session.layers()["module"])
    assert "layers.0" in names and "layers.0.self_attn" not in names
    (warning,) = _fused_warnings(prof.session)
    assert warning.startswith("2 TransformerEncoderLayer(s) (e.g. layers.0)")
    assert "torch.backends.mha.set_fastpath_enabled(False)" in warning


def test_with_the_fast_path_off_sublayers_have_rows_and_no_warning():
    model = _encoder()
    before = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with greenprof.profile(calibrate=False, sensors=[]) as prof, torch.no_grad():
            model(torch.randn(2, 5, 16))
    finally:
        torch.backends.mha.set_fastpath_enabled(before)
    names = set(prof.session.layers()["module"])
    assert {"layers.0.self_attn", "layers.1.linear1"} <= names
    assert not _fused_warnings(prof.session)
