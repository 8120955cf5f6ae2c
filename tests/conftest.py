"""Shared fixtures: tiny synthetic photographs so tests never depend on downloads."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cv2
import numpy as np
import pytest

from data_pipeline.sources import Photo


def textured_image(seed: int, height: int = 160, width: int = 200) -> np.ndarray:
    """A sharp, strongly textured uint8 RGB image (random rectangles and noise)."""
    rng = np.random.default_rng(seed)
    image = np.full((height, width, 3), 128, np.uint8)
    for _ in range(60):
        y0, x0 = rng.integers(0, height), rng.integers(0, width)
        y1, x1 = y0 + rng.integers(4, 40), x0 + rng.integers(4, 40)
        cv2.rectangle(image, (int(x0), int(y0)), (int(x1), int(y1)), tuple(int(c) for c in rng.integers(0, 256, 3)), -1)
    return image


@pytest.fixture
def photos():
    """Six textured photographs in six groups."""
    return [Photo(name=f"p{i}", group=f"g{i}", image=textured_image(i)) for i in range(6)]


def write_photo_folder(root):
    """Five sharp textured photographs written under `root`, nested one level; returns `root`."""
    (root / "sub").mkdir(parents=True)
    for i in range(5):
        where = root / ("sub" if i % 2 else ".") / f"img{i}.png"
        cv2.imwrite(str(where), textured_image(i)[:, :, ::-1])
    return root


def load_benchmark(name: str):
    """The script `benchmarks/<name>.py` as a module (the benchmarks are scripts, not a package)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def backup_optimizer_steps(run, stage: str = "finetune") -> int:
    """The optimizer's step counter in the last backup `fit` wrote for `stage` of the run folder `run`."""
    import h5py

    with h5py.File(run / "backup" / stage / "latest.weights.h5", "r") as f:
        return int(np.array(f["optimizer"]["vars"]["0"]))


def run_in_plain_tensorflow(body: str, cwd) -> str:
    """Run `body` (Python, with `sys`, `np` and `tf` imported) in a fresh interpreter in `cwd`; assert that it
    succeeded and imported no blurnet or data_pipeline module; return its standard output."""
    import subprocess
    import sys
    import textwrap

    script = "import sys, numpy as np, tensorflow as tf\n" + textwrap.dedent(body) + textwrap.dedent("""
        print("imported:", sorted(k for k in sys.modules if k.split(".")[0] in ("blurnet", "data_pipeline")))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=cwd)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "imported: []" in done.stdout  # tensorflow alone (it loads keras internally): no blurnet code ran
    return done.stdout


@pytest.fixture
def photo_folder(tmp_path):
    """A folder of sharp photographs on disk, nested one level."""
    return write_photo_folder(tmp_path)


@pytest.fixture
def step_traces(monkeypatch):
    """A list that gains an item each time Keras traces a model's training step (`keras.Model.train_step`)."""
    import keras

    traces, step = [], keras.Model.train_step
    monkeypatch.setattr(keras.Model, "train_step", lambda self, *args: traces.append(1) or step(self, *args))
    return traces


@pytest.fixture(autouse=True)
def _logs_reach_caplog():
    """The CLI stops blurnet's loggers from propagating (it prints them itself); tests read them through caplog."""
    import logging

    for name in ("blurnet", "data_pipeline", "benchmarks"):
        logging.getLogger(name).propagate = True
    yield


@pytest.fixture(scope="session")
def head_export(tmp_path_factory):
    """An untrained MobileNetV2 with the spectral branch and the parameter head, exported as `fit` exports (8 views,
    32 px tiles), built once for every module: (the Keras model, the export folder)."""
    from blurnet.export import export_model
    from blurnet.model import create_model
    from data_pipeline.classes import CLASS_NAMES, BlurRanges

    model = create_model("mobilenetv2", weights=None, spectrum=True, parameter_head=True)
    metadata = {"classes": list(CLASS_NAMES), "image_size": 32, "blur_ranges": BlurRanges().to_dict(),
                "backbone": "mobilenetv2", "weights": "none", "spectrum": True, "parameter_head": True}
    return model, export_model(model, tmp_path_factory.mktemp("head") / "head", metadata, views=8, tile=32)
