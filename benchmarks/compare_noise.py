"""Does ``greenprof compare`` cry wolf? The same script run N times, compared pairwise.

Run by hand (not part of the test suite):

    .venv/bin/python benchmarks/compare_noise.py [--runs 10] [--busy 3] [--steps 200]

It writes a small training script (an MLP of a few blocks), runs it ``--runs`` times through
``python -m greenprof run``, ``--busy`` of them (spread over the series) beside a busy
background process (one spinning Python process per logical CPU), then one more run with
``--wide`` (one layer, ``2.fc.fc``, made twice as wide, so twice as expensive). It compares every
ordered pair of the plain runs at the default threshold and prints how many were falsely flagged
(a regression where nothing changed in the code) and how many carried a machine verdict, then
compares each plain run with the widened one and prints how often the widened layer was flagged.
Every figure printed is counted from this run's output.
"""

from __future__ import annotations

import argparse
import itertools
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SCRIPT = """
import sys, torch
torch.manual_seed(0)
torch.set_num_threads(1)
wide = "--wide" in sys.argv
steps = int(sys.argv[sys.argv.index("--steps") + 1])

class Wide(torch.nn.Module):
    def __init__(self, width, factor):
        super().__init__()
        self.width = width
        self.fc = torch.nn.Linear(width, width * factor)

    def forward(self, x):
        return self.fc(x)[:, : self.width]

class Block(torch.nn.Module):
    def __init__(self, width, factor=1):
        super().__init__()
        self.fc = Wide(width, factor)
        self.act = torch.nn.ReLU()

    def forward(self, x):
        return self.act(self.fc(x))

width = 256
blocks = [Block(width, 2 if (wide and i == 2) else 1) for i in range(4)]
model = torch.nn.Sequential(*blocks, torch.nn.Linear(width, 1))
opt = torch.optim.SGD(model.parameters(), lr=1e-3)
x = torch.randn(64, width)
for _ in range(steps):
    loss = model(x).pow(2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
"""

BUSY = "while True:\n    pass\n"


def greenprof(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "greenprof", *args], capture_output=True, text=True, timeout=600
    )


def run_once(script: Path, out: Path, steps: int, *, wide: bool, busy: bool) -> float:
    """Run the script once under greenprof; return its wall time, seconds."""
    spinners = []
    if busy:
        spinners = [
            subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(os.cpu_count() or 1)
        ]
    try:
        start = time.perf_counter()
        done = greenprof(
            "run",
            "--out",
            str(out),
            "--no-report",
            str(script),
            "--steps",
            str(steps),
            *(["--wide"] if wide else []),
        )
        took = time.perf_counter() - start
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()
    if done.returncode != 0:
        raise SystemExit(f"greenprof run failed:\n{done.stderr}")
    return took


def compare(a: Path, b: Path) -> tuple[int, str]:
    done = greenprof("compare", str(a), str(b), "--fail-on-regression", "-n", "5")
    return done.returncode, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="plain runs of the same script")
    parser.add_argument("--busy", type=int, default=3, help="of them, beside a busy process")
    parser.add_argument("--steps", type=int, default=200, help="training steps per run")
    parser.add_argument("--keep", type=Path, help="keep the run directories in this folder")
    parser.add_argument("--show", action="store_true", help="print each flagged comparison")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="compare-noise-"))
    root.mkdir(parents=True, exist_ok=True)
    script = root / "train.py"
    script.write_text(SCRIPT)
    plain = []
    for i in range(args.runs):
        # Busy runs spread over the series, so that they fall on both sides of the pairs.
        busy = (
            args.busy > 0
            and i % max(1, args.runs // args.busy) == 1
            and i // max(1, args.runs // args.busy) < args.busy
        )
        out = root / f"run{i}"
        took = run_once(script, out, args.steps, wide=False, busy=busy)
        print(f"run {i}{' (busy machine)' if busy else ''}: {took:.2f} s")
        plain.append((out, busy))
    wide = root / "wide"
    took = run_once(script, wide, args.steps, wide=True, busy=False)
    print(f"run wide (2.fc.fc twice as expensive): {took:.2f} s")

    flagged = machine = pairs = 0
    for (a, busy_a), (b, busy_b) in itertools.combinations(plain, 2):
        for x, y in ((a, b), (b, a)):
            pairs += 1
            code, text = compare(x, y)
            machine += "not a code change" in text or "not the code's" in text
            if code != 0:
                flagged += 1
                if args.show:
                    print(f"--- {x.name} -> {y.name} (busy {busy_a}/{busy_b})\n{text}")
    print(
        f"same script, {pairs} ordered pairs: {flagged} falsely flagged, {machine} machine verdicts"
    )

    caught = 0
    for a, _ in plain:
        code, text = compare(a, wide)
        rows = text.splitlines()
        caught += code == 1 and any("WORSE" in r and r.rstrip().endswith(" 2.fc.fc") for r in rows)
        if args.show and not (code == 1):
            print(f"--- {a.name} -> wide: not flagged\n{text}")
    print(f"widened layer: flagged in {caught} of {len(plain)} comparisons")
    print(f"run directories: {root}")


if __name__ == "__main__":
    main()
