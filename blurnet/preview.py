"""`blurnet preview`: a picture of what the model learns from."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from blurnet.atomic import atomic_file
from data_pipeline.classes import CLASS_NAMES
from data_pipeline.degrade import BlurParams, make_psf


def example_params() -> list[BlurParams]:
    """One mid-range example of each class, for drawing its PSF."""
    return [BlurParams(0), BlurParams(1, 2.5), BlurParams(2, 15.0, 30.0), BlurParams(3, 5.0)]


def describe_params(label: int, params: np.ndarray) -> str:
    """Short text for a sample: class and its parameters (`params` as the datasets carry it)."""
    strength, angle, noise = (float(v) for v in params)
    name = CLASS_NAMES[label]
    detail = {
        "sharp": "",
        "gaussian": f" s={strength:.1f}",
        "motion": f" L={strength:.0f} {angle:.0f}°",
        "defocus": f" r={strength:.1f}",
    }[name]
    return f"{name}{detail} n={noise:.1f}"


def write_preview(path: str | os.PathLike, images: np.ndarray, labels: np.ndarray, params: np.ndarray, per_class: int = 4) -> Path:
    """Save a grid: the four PSFs on top, then `per_class` sample crops of each class below.

    `images`, `labels`, `params` are one batch from the pipeline (with params).
    Written atomically (temporary file, then rename).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    fig, axes = plt.subplots(per_class + 1, 4, figsize=(10, 2.6 * (per_class + 1)))
    for col, p in enumerate(example_params()):
        psf = make_psf(p)
        canvas = np.zeros((31, 31), np.float32)
        h, w = psf.shape
        canvas[15 - h // 2 : 15 + h // 2 + 1, 15 - w // 2 : 15 + w // 2 + 1] = psf
        ax = axes[0, col]
        ax.imshow(canvas, cmap="magma", interpolation="nearest")
        ax.set_title(f"PSF: {describe_params(col, p.as_array()).rsplit(' n=', 1)[0]}", fontsize=9)
        ax.axis("off")
    for col in range(4):
        idx = np.flatnonzero(labels == col)[:per_class]
        for row in range(per_class):
            ax = axes[row + 1, col]
            ax.axis("off")
            if row < len(idx):
                i = idx[row]
                ax.imshow(np.clip(images[i], 0, 255).astype(np.uint8), interpolation="nearest")
                ax.set_title(describe_params(col, params[i]), fontsize=8)
    fig.suptitle("blurnet training samples: B = I * K + N (31 x 31 PSFs, crops at 1:1)")
    fig.tight_layout()
    try:
        with atomic_file(path) as tmp:
            fig.savefig(tmp, dpi=100, format="png")
    finally:
        plt.close(fig)
    return path
