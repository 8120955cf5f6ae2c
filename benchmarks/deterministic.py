"""What `blurnet fit --deterministic` costs in training speed, and whether runs repeat.

    python benchmarks/deterministic.py

Runs the same short `blurnet fit` (DenseNet121 from scratch with the spectral
branch, 64 px crops, batch 32, 2 epochs of 30 steps, 64 validation and 64 test
images, 1 view) with and without `--deterministic`, alternating, twice each, each
in its own process. Training speed is the second epoch's time per step as Keras
logs it (30 training steps and the 64 validation images; the graph is built by
then); the whole `fit` wall time (`wall_time_s` in `blurnet.json`: data, graph
building, training, held-out test, export) is printed beside it. Each pair of runs
is also compared: the same held-out accuracy, and bit-identical final weights.

Last line: JSON with `steps_per_s` and `deterministic_steps_per_s` (medians),
`ratio` (the median over rounds of deterministic / default), `fit_wall_ratio`,
and `identical_weights` / `deterministic_identical_weights` (whether the two runs
of each mode ended with bit-identical weights).
"""
from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import h5py
import numpy as np

ARGS = ["--weights", "none", "--backbone", "densenet121", "--image-size", "64", "--batch-size", "32",
        "--epochs-finetune", "2", "--steps-per-epoch", "30", "--val-images", "64", "--test-images", "64",
        "--test-time-views", "1", "--patience", "100"]
ROUNDS = 2
EPOCH_LINE = re.compile(r"^30/30 - (\d+)s - (\d+)(ms|s)/step", re.M)  # Keras' one line per epoch (output not a terminal)


def weights(path: Path) -> list[np.ndarray]:
    """Every array of a Keras weights file, in the file's order."""
    arrays = []
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, item: arrays.append(item[()]) if isinstance(item, h5py.Dataset) else None)
    return arrays


def run_fit(tmp: Path, name: str, deterministic: bool) -> dict:
    """One `blurnet fit` in its own process: steps/s of its second epoch, wall time, held-out accuracy, weights."""
    command = [sys.executable, "-m", "blurnet.cli", "fit", *ARGS, "--name", name, "--out", str(tmp / "models"),
               "--run-dir", str(tmp / "runs")] + (["--deterministic"] if deterministic else [])
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}")
    epochs = EPOCH_LINE.findall(done.stdout)
    if len(epochs) != 2:
        raise SystemExit(f"expected two epoch lines of 30/30 steps, got {epochs}:\n{done.stdout}")
    epoch_s, per_step, unit = epochs[1]
    # Keras rounds to whole ms per step, or to whole seconds from 1 s/step on: then the epoch's seconds / 30.
    seconds_per_step = float(per_step) / 1000.0 if unit == "ms" else float(epoch_s) / 30.0
    meta = json.loads((tmp / "models" / name / "blurnet.json").read_text())
    return {"steps_per_s": 1.0 / seconds_per_step, "wall_s": meta["wall_time_s"], "accuracy": meta["held_out"]["accuracy"],
            "weights": weights(tmp / "runs" / name / "final.weights.h5")}


def identical(a: dict, b: dict) -> bool:
    return a["accuracy"] == b["accuracy"] and len(a["weights"]) == len(b["weights"]) and all(
        np.array_equal(x, y) for x, y in zip(a["weights"], b["weights"]))


def main():
    print(f"blurnet fit {' '.join(ARGS)} [--deterministic], alternating, {ROUNDS} rounds", flush=True)
    default, deterministic = [], []
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        for r in range(ROUNDS):
            for runs, flag in ((default, False), (deterministic, True)):
                result = run_fit(tmp, f"{'det' if flag else 'default'}-{r}", flag)
                runs.append(result)
                print(f"round {r + 1}, {'--deterministic' if flag else 'default        '}: {result['steps_per_s']:.2f} steps/s "
                      f"(second epoch), fit {result['wall_s']:.0f} s, held-out accuracy {result['accuracy']:.4f}", flush=True)
    ratio = statistics.median(d["steps_per_s"] / n["steps_per_s"] for n, d in zip(default, deterministic))
    wall_ratio = statistics.median(d["wall_s"] / n["wall_s"] for n, d in zip(default, deterministic))
    rate = statistics.median(n["steps_per_s"] for n in default)
    det_rate = statistics.median(d["steps_per_s"] for d in deterministic)
    same, det_same = identical(default[0], default[1]), identical(deterministic[0], deterministic[1])
    print(f"steps/s: default {rate:.2f}, --deterministic {det_rate:.2f}; deterministic / default {ratio:.3f} "
          f"(whole fit wall time {wall_ratio:.3f})")
    print(f"bit-identical weights and held-out accuracy across runs: default {same}, --deterministic {det_same}")
    print(json.dumps({"steps_per_s": round(rate, 3), "deterministic_steps_per_s": round(det_rate, 3), "ratio": round(ratio, 3),
                      "fit_wall_ratio": round(wall_ratio, 3), "identical_weights": same, "deterministic_identical_weights": det_same}))


if __name__ == "__main__":
    main()
