"""`blurnet preview`: a picture of what the model learns from.

Three parts, so that a person can check the training data by eye: every PSF
family the training draws (classic shapes, camera-shake trajectories,
real-lens apertures), one crop through the camera steps one at a time, and
training samples made as the training stream makes them.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from blurnet.atomic import atomic_file
from data_pipeline.augment import jpeg_roundtrip
from data_pipeline.camera import CameraConfig, expose
from data_pipeline.classes import CLASS_NAMES
from data_pipeline.degrade import BlurParams, make_psf
from data_pipeline.psf import (
    SHAKE_MOTION_MIN_SPREAD,
    SHAKE_SHARP_MAX_SPREAD,
    disk_equivalent_radius,
    lens_psf,
    motion_spread,
    soften,
)

#: The lens of the camera-steps row: a 6-blade iris, so clipped highlights show its shape.
CAMERA_ROW_PSF = dict(radius=4.0, blades=6, rotation=15.0)
#: The JPEG quality of the camera-steps row's last step: the lowest the training draws.
CAMERA_ROW_JPEG = 50


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


def _shake_seed(label: int, extent: float, accept, start: int = 0) -> int:
    """The first PSF seed from `start` whose camera shake of `extent` passes `accept(spread)`, as `sample_blur`
    would keep it."""
    for seed in range(start, start + 100):
        if accept(motion_spread(make_psf(BlurParams(label, extent, family="shake", psf_seed=seed, extent=extent)))[0]):
            return seed
    raise RuntimeError(f"no camera shake of extent {extent} in 100 seeds passed")  # not met: most draws pass


def family_examples() -> list[tuple[str, np.ndarray]]:
    """One PSF of each family the training draws, titled with the size it is labelled with.

    Classic: identity, Gaussian, straight streak, uniform disk. Camera shake: a
    sharp photograph's shake too small to see and two motion trajectories
    (labelled by their energy spread, `psf.motion_spread`), the second softened
    by the optics (`BlurParams.softness`, 0.7 px; labelled by its path's spread,
    as training labels it). Real lenses
    (`psf.lens_psf`, labelled by the equivalent disk's radius): 5- and 8-blade
    irises, brighter rim, brighter centre, softened edge.
    """
    sharp, motion = CLASS_NAMES.index("sharp"), CLASS_NAMES.index("motion")
    shaken = _shake_seed(sharp, 0.0, lambda spread: spread <= SHAKE_SHARP_MAX_SPREAD)
    first = _shake_seed(motion, 15.0, lambda spread: spread >= SHAKE_MOTION_MIN_SPREAD)
    second = _shake_seed(motion, 15.0, lambda spread: SHAKE_MOTION_MIN_SPREAD <= spread < 9.0, start=first + 1)

    def spread(kernel):  # what a trajectory is labelled with
        return f" L={motion_spread(kernel)[0]:.1f}"

    path = make_psf(BlurParams(motion, 15.0, family="shake", psf_seed=second, extent=15.0))  # the second trajectory

    def radius(kernel):  # what an aperture is labelled with
        return f" r={disk_equivalent_radius(kernel):.1f}"

    kernels = [
        ("sharp", make_psf(BlurParams(sharp)), None),
        ("sharp, shaken", make_psf(BlurParams(sharp, family="shake", psf_seed=shaken)), spread),
        ("gaussian s=2.5", make_psf(BlurParams(1, 2.5)), None),
        ("streak L=15 30°", make_psf(BlurParams(motion, 15.0, 30.0)), None),
        ("shake", make_psf(BlurParams(motion, 15.0, family="shake", psf_seed=first, extent=15.0)), spread),
        ("shake, softened 0.7", soften(path, 0.7), lambda _: spread(path)),  # as make_psf softens it
        ("disk", make_psf(BlurParams(3, 5.0)), radius),
        ("5 blades", lens_psf(5.0, blades=5, rotation=10.0), radius),
        ("8 blades", lens_psf(5.0, blades=8), radius),
        ("brighter rim", lens_psf(5.0, rim=0.8), radius),
        ("brighter centre", lens_psf(5.0, rim=-0.8), radius),
        ("soft edge", lens_psf(5.0, softness=0.7), radius),
    ]
    return [(title + (label(kernel) if label else ""), kernel) for title, kernel, label in kernels]


def camera_steps(sharp: np.ndarray, seed: int = 0) -> list[tuple[str, np.ndarray]]:
    """`sharp` (sRGB 0..255, sides over 26 px) blurred by `CAMERA_ROW_PSF` and taken through the camera steps one
    at a time, each step added to the ones before; all centre crops of one size.

    The blur on sRGB values (the plain blur model), then in linear light with highlights pushed above white so
    they clip into the iris's shape, shot noise, in-camera sharpening, and JPEG at quality `CAMERA_ROW_JPEG`.
    Each is `camera.expose` with that step's probability set to 1 and the others to 0, from the same seed.
    Only the margin the blur and the camera reach is cropped away, so a crop of N px gives N - 26 px.
    """
    psf = lens_psf(**CAMERA_ROW_PSF)
    margin = psf.shape[0] // 2 + 8
    if min(sharp.shape[:2]) <= 2 * margin:
        raise ValueError(f"the camera-steps crop must be larger than {2 * margin} px, got {sharp.shape[:2]}.")
    none = CameraConfig.none()
    linear = CameraConfig(linear_probability=1.0, highlight_probability=1.0, shot_noise=(0.0, 0.0),
                          sharpen_probability=0.0, resample_probability=0.0)
    noisy = CameraConfig(**{**linear.to_dict(), "shot_noise": (0.0006, 0.0006)})
    sharpened = CameraConfig(**{**noisy.to_dict(), "sharpen_probability": 1.0, "sharpen_amount": (1.2, 1.2)})
    # Pushed-up highlights clip after the blur only if they are bright and large enough: take the first seed,
    # from `seed` on, whose highlights clip somewhere (a few in ten do), so the row shows it.
    inner = (slice(margin, -margin), slice(margin, -margin))
    seed = next((s for s in range(seed, seed + 50)
                 if expose(sharp, psf, 0.0, np.random.default_rng(s), linear)[inner].max() >= 254.5), seed)
    steps = [("sharp crop", np.asarray(sharp, np.float32))]
    for title, camera in (("blur (sRGB values)", none), ("in linear light,\nhighlights clip", linear),
                          ("+ shot noise", noisy), ("+ sharpening", sharpened)):
        steps.append((title, expose(sharp, psf, 0.0, np.random.default_rng(seed), camera)))
    steps.append((f"+ JPEG q{CAMERA_ROW_JPEG}", jpeg_roundtrip(steps[-1][1], CAMERA_ROW_JPEG)))
    return [(title, image[inner]) for title, image in steps]


def pick_camera_crop(croppers, rng: np.random.Generator, size: int, candidates: int = 12) -> np.ndarray:
    """A `size`-px sharp crop for the camera-steps row: of `candidates` random crops (from random `croppers`, the
    batch makers' `crops.TexturedCropper`s), the darkest (lowest median) with a bright spot (some pixel >= 200),
    where clipped highlights and noise show best; the darkest of all if none has one."""
    crops = [croppers[int(rng.integers(len(croppers)))].crop(rng, size) for _ in range(candidates)]
    bright = [c for c in crops if c.max() >= 200] or crops
    return min(bright, key=lambda c: float(np.median(c)))


def highlight_window(steps: list[np.ndarray], side: int) -> tuple[int, tuple[int, int]]:
    """`(zoom, (top, left))`: the `zoom` x `zoom` window (`side`, or the crop's side if smaller) of the
    `camera_steps` images where blurring in linear light changed them most, i.e. where the highlights clipped."""
    import cv2

    zoom = min(side, *steps[0].shape[:2])
    change = np.abs(steps[2] - steps[1]).sum(axis=-1).astype(np.float32)
    window = cv2.boxFilter(change, -1, (zoom, zoom), normalize=False, borderType=cv2.BORDER_CONSTANT, anchor=(0, 0))
    h, w = change.shape
    window = window[: h - zoom + 1, : w - zoom + 1]  # windows that fit
    top, left = np.unravel_index(int(np.argmax(window)), window.shape)
    return zoom, (int(top), int(left))


def write_preview(path: str | os.PathLike, images: np.ndarray, labels: np.ndarray, params: np.ndarray,
                  sharp_crop: np.ndarray, per_class: int = 4) -> Path:
    """Save the preview: the PSF families (`family_examples`), `sharp_crop` through the camera steps
    (`camera_steps`), then `per_class` training samples of each class.

    `images`, `labels`, `params` are one batch of the training stream (with params). Written atomically
    (temporary file, then rename).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    families, steps = family_examples(), camera_steps(sharp_crop)
    rows = 3 + per_class
    fig = plt.figure(figsize=(12, 2.2 * 3 + 3.0 * per_class))
    grid = fig.add_gridspec(rows, 12, height_ratios=[1, 1, 1.1] + [1.4] * per_class)
    size = max(k.shape[0] for _, k in families)
    for i, (title, kernel) in enumerate(families):
        ax = fig.add_subplot(grid[i // 6, 2 * (i % 6) : 2 * (i % 6) + 2])
        ax.imshow(np.pad(kernel, (size - kernel.shape[0]) // 2), cmap="magma", interpolation="nearest")
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    zoom, (top, left) = highlight_window([image for _, image in steps], 96)
    for i, (title, image) in enumerate(steps):
        ax = fig.add_subplot(grid[2, 2 * i : 2 * i + 2])
        ax.imshow(np.clip(image[top : top + zoom, left : left + zoom], 0, 255).astype(np.uint8), interpolation="nearest")
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    for col in range(len(CLASS_NAMES)):
        idx = np.flatnonzero(labels == col)[:per_class]
        for row, i in enumerate(idx):
            ax = fig.add_subplot(grid[3 + row, 3 * col : 3 * col + 3])
            ax.imshow(np.clip(images[i], 0, 255).astype(np.uint8), interpolation="nearest")
            ax.set_title(describe_params(col, params[i]), fontsize=8)
            ax.axis("off")
    fig.suptitle(f"blurnet training data, B = I * K + N. Rows 1-2: the PSF families ({size} x {size} px); row 3: the "
                 f"{zoom} x {zoom} px of one crop (where its highlights clip) through the camera steps;\nbelow: training samples as the training stream "
                 "makes them (camera steps and file formats included)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    try:
        with atomic_file(path) as tmp:
            fig.savefig(tmp, dpi=100, format="png")
    finally:
        plt.close(fig)
    return path
