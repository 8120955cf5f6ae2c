"""tf.distribute and fault tolerance, each in fresh `blurnet fit` processes.

Logical CPU devices must be configured before TensorFlow starts, so every run
here is a subprocess. MobileNetV2 keeps them fast; the strategy code is the
same for every backbone.
"""
import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from blurnet.distribute import is_chief, scaled_learning_rate, worker_index
from conftest import backup_optimizer_steps

TINY = ["--weights", "none", "--backbone", "mobilenetv2", "--image-size", "32", "--batch-size", "8",
        "--val-images", "8", "--test-images", "8"]


def fit_command(data, out, runs, *extra):
    return [sys.executable, "-m", "blurnet.cli", "fit", "--data", str(data), "--out", str(out), "--run-dir", str(runs), *TINY, *extra]


def env(**extra):
    e = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **extra}
    e.pop("TF_CONFIG", None) if "TF_CONFIG" not in extra else None
    return e


def free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def h5_arrays(path):
    arrays = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: arrays.__setitem__(name, np.array(obj)) if isinstance(obj, h5py.Dataset) else None)
    return arrays


@pytest.mark.slow
def test_two_workers_end_with_identical_weights(tmp_path, photo_folder):
    ports = free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = []
    for index in range(2):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        cmd = fit_command(photo_folder, tmp_path / "out", tmp_path / "runs", "--strategy", "multiworker",
                          "--epochs-finetune", "1", "--steps-per-epoch", "3")
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env(TF_CONFIG=tf_config)))
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    assert "CollectiveAllReduceStrategy with 2 replica(s); worker 0" in outs[0][1]  # MultiWorkerMirroredStrategy; progress on stderr
    assert "worker 1: final weights" in outs[1][1]
    chief = h5_arrays(tmp_path / "runs" / "blurnet-densenet121" / "final.weights.h5")
    other = h5_arrays(tmp_path / "runs" / "blurnet-densenet121.worker-1" / "final.weights.h5")
    assert chief.keys() == other.keys() and len(chief) > 100
    for name in chief:
        np.testing.assert_array_equal(chief[name], other[name], err_msg=name)
    assert (tmp_path / "out" / "blurnet-densenet121" / "saved_model.pb").is_file()  # only the chief exports
    assert not (tmp_path / "out" / "blurnet-densenet121.worker-1").exists()


@pytest.mark.slow
def test_killed_mirrored_fit_resumes_from_its_backup(tmp_path, photo_folder):
    """A fit under MirroredStrategy on two logical CPUs, killed in its second epoch, then resumed."""
    from blurnet.export import model_from_export

    out, runs = tmp_path / "out", tmp_path / "runs"
    target = out / "blurnet-densenet121"
    target.mkdir(parents=True)
    (target / "saved_model.pb").write_bytes(b"old")
    (target / "blurnet.json").write_text('{"old": true}')
    steps, epochs = 10, 3  # about 4 s an epoch here: epochs 2 and 3, the held-out test and the export follow the kill
    cmd = fit_command(photo_folder, out, runs, "--strategy", "mirrored", "--cpu-devices", "2",
                      "--epochs-finetune", str(epochs), "--steps-per-epoch", str(steps))
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env())
    stages = runs / "blurnet-densenet121" / "stages.jsonl"
    deadline = time.time() + 400
    while time.time() < deadline and proc.poll() is None and not (stages.exists() and stages.read_text().count("\n") >= 1):
        time.sleep(0.2)
    time.sleep(1.0)  # inside epoch 2 (or 3: still before the end)
    assert proc.poll() is None, "fit finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    completed = stages.read_text().count("\n")
    assert 1 <= completed < epochs
    assert (target / "blurnet.json").read_text() == '{"old": true}'  # the older export is intact
    done = subprocess.run(cmd + ["--resume"], capture_output=True, text=True, timeout=600, env=env())
    assert done.returncode == 0, done.stderr[-3000:]
    assert "MirroredStrategy with 2 replica(s)" in done.stderr  # blurnet logs its progress on stderr
    meta = json.loads((target / "blurnet.json").read_text())
    assert meta["strategy"] == {"name": "MirroredStrategy", "replicas": 2}
    assert meta["fit_config"]["resume"] is True and meta["held_out"]["n_images"] == 8
    rows = list(csv.DictReader(open(target / "training_log.csv")))
    assert [int(r["epoch"]) for r in rows] == list(range(epochs))  # continued, not restarted
    # The optimizer state came back too: its step counter in the last backup counts
    # every step, the ones before the kill included (it would be 2 * steps otherwise).
    assert backup_optimizer_steps(runs / "blurnet-densenet121") == epochs * steps
    outputs = model_from_export(target).output  # the parameter head trains by default
    assert {name: tuple(t.shape) for name, t in outputs.items()} == {"probabilities": (None, 4), "parameters": (None, 5)}


def test_worker_helpers(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert worker_index() == 0 and is_chief()
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}))
    assert worker_index() == 1 and not is_chief()
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"chief": ["a:1"], "worker": ["b:2"]}, "task": {"type": "chief", "index": 0}}))
    assert is_chief()
    assert scaled_learning_rate(1e-3, 64) == pytest.approx(2e-3)
