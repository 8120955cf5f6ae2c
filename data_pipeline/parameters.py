"""Blur parameters as regression targets: what a parameter head learns, and how its answer reads back.

A sample's parameters `(strength, angle, noise)` (`degrade.BlurParams.as_array`) become five targets,
`PARAMETER_TARGETS`: Gaussian sigma, motion length (for a camera-shake trajectory, its energy spread), the motion
angle as `(cos 2θ, sin 2θ)`, and the defocus radius (for a real-lens aperture, that of the uniform disk with its
second moments), all in pixels at the sample's own scale. The angle of a streak has period 180 degrees; its
doubled-angle point on the unit circle has no jump at 0/180, so a regression on it never has to learn a
discontinuity (`angle_degrees` reads it back).

Each target counts only for samples of its own class: `parameter_targets` returns a mask beside the
targets (sigma for `gaussian`, length and angle for `motion`, radius for `defocus`, nothing for `sharp`
or for a labelled image, whose parameters are unknown: NaN, `labelled.LabelledBatchMaker`).
"""
from __future__ import annotations

import numpy as np

from data_pipeline.classes import CLASS_NAMES

#: The columns a parameter head predicts, in order.
PARAMETER_TARGETS = ("sigma", "length", "angle_cos", "angle_sin", "radius")
#: The columns each class's samples are trained on.
CLASS_TARGETS = {"sharp": (), "gaussian": ("sigma",), "motion": ("length", "angle_cos", "angle_sin"), "defocus": ("radius",)}
#: Per-class masks, one row per class in `CLASS_NAMES` order.
TARGET_MASK = np.array([[name in CLASS_TARGETS[c] for name in PARAMETER_TARGETS] for c in CLASS_NAMES], np.float32)


def parameter_targets(labels: np.ndarray, params: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Targets `(n, 5)` and mask `(n, 5)` float32 for class `labels` `(n,)` and `params` `(n, 3)`.

    `params` rows are `(strength, angle in degrees, noise sigma)`; a row with a NaN strength (unknown
    parameters) gets an all-zero mask. Masked-out targets are 0.
    """
    labels = np.asarray(labels).astype(np.int64).reshape(-1)
    params = np.asarray(params, np.float32)
    if params.shape != (len(labels), 3):
        raise ValueError(f"params must have shape ({len(labels)}, 3) for {len(labels)} labels, got {params.shape!r}.")
    if labels.size and (labels.min() < 0 or labels.max() >= len(CLASS_NAMES)):
        raise ValueError(f"labels must be in 0..{len(CLASS_NAMES) - 1}, got {sorted(set(labels.tolist()))!r}.")
    known = np.isfinite(params[:, 0]) & np.isfinite(params[:, 1])
    strength, doubled = np.where(known, params[:, 0], 0.0), np.deg2rad(2.0 * np.where(known, params[:, 1], 0.0))
    targets = np.stack([strength, strength, np.cos(doubled), np.sin(doubled), strength], axis=1).astype(np.float32)
    mask = TARGET_MASK[labels] * known[:, None]
    return targets * mask, mask


def angle_degrees(cos2: np.ndarray, sin2: np.ndarray) -> np.ndarray:
    """The angle in degrees, in [0, 180), of a doubled-angle point `(cos 2θ, sin 2θ)` (any length)."""
    return np.mod(np.rad2deg(np.arctan2(sin2, cos2)) / 2.0, 180.0)


def raw_from_estimates(sigma, length, angle, radius) -> np.ndarray:
    """The head's raw `(n, 5)` layout (`PARAMETER_TARGETS`) of decoded estimates (sizes in px, the angle in
    degrees, e.g. a SavedModel's `estimate` output): the inverse of decoding, up to its clipping of sizes at 0."""
    doubled = np.deg2rad(2.0 * np.asarray(angle, np.float64))
    return np.stack([np.asarray(sigma, np.float64), np.asarray(length, np.float64), np.cos(doubled), np.sin(doubled),
                     np.asarray(radius, np.float64)], axis=1)
