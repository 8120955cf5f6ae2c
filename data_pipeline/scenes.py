"""Generated sharp scenes (the dead-leaves model) to train on beside photographs.

The bundled photographs are a handful of scenes, and a classifier trained on them learns those scenes as
much as their blur. A dead-leaves image (Lee, Mumford & Huang, "Occlusion models for natural images",
IJCV 2001; the texture chart of ISO 19567-2 for camera sharpness) stacks opaque disks whose radii follow
a power law, density proportional to r**-3: the scale-invariant edge statistics of natural photographs,
with as many new scenes as wanted. Each disk is drawn antialiased (the edges are as sharp as a well
focused photograph's, without staircase aliasing), and a faint 1/f shading over the whole image gives
the flat leaves the fine texture and slow gradients a photograph has.

`blurnet fit --generated-scenes N` adds N of them to the training photographs only: validation and the
held-out test stay photographs, so held-out figures remain comparable between models.
"""
from __future__ import annotations

import cv2
import numpy as np

from data_pipeline.sources import Photo

# Leaf radii in pixels: from three pixels (fine texture) to about a third of a default scene.
DEFAULT_RADII = (3.0, 240.0)
DEFAULT_SIDE = 768
# Expected uncovered fraction of the scene is exp(-COVERAGE): background shows through in ~0.7 % of it.
COVERAGE = 5.0
SHADING_AMPLITUDE = 0.08  # standard deviation of the multiplicative 1/f shading
_SHIFT = 4  # cv2 drawing with 4 fractional bits: centres and radii at 1/16 px


def _checked(radii) -> tuple[float, float]:
    """(min, max) leaf radius as floats; `ValueError` echoing them unless 0 < min < max."""
    r_min, r_max = (float(r) for r in radii)
    if not 0 < r_min < r_max:
        raise ValueError(f"radii must satisfy 0 < min < max, got {radii!r}.")
    return r_min, r_max


def leaf_radii(rng: np.random.Generator, count: int, radii: tuple[float, float] = DEFAULT_RADII) -> np.ndarray:
    """`count` radii with density proportional to r**-3 on [radii[0], radii[1]] (inverse-CDF sampling)."""
    r_min, r_max = _checked(radii)
    u = rng.random(count)
    return (r_min**-2 - u * (r_min**-2 - r_max**-2)) ** -0.5


def leaf_count(height: int, width: int, radii: tuple[float, float] = DEFAULT_RADII) -> int:
    """How many leaves cover a `height` x `width` scene (centres spread over it plus a `radii[1]` border) but
    for a fraction exp(-COVERAGE) of it on average."""
    r_min, r_max = _checked(radii)
    mean_square = np.log(r_max / r_min) / (0.5 * (r_min**-2 - r_max**-2))  # E[r**2] under the r**-3 density
    area = (height + 2 * r_max) * (width + 2 * r_max)
    return int(np.ceil(COVERAGE * area / (np.pi * mean_square)))


def leaf_colours(rng: np.random.Generator, count: int) -> np.ndarray:
    """`count` RGB colours (uint8): a uniform grey level plus a moderate chroma, as natural surfaces mostly are."""
    grey = rng.uniform(10, 245, (count, 1))
    chroma = rng.normal(0.0, 30.0, (count, 3))
    chroma -= chroma.mean(axis=1, keepdims=True)  # colour without changing the grey level
    return np.clip(grey + chroma, 0, 255).astype(np.uint8)


def shading(rng: np.random.Generator, height: int, width: int, amplitude: float = SHADING_AMPLITUDE) -> np.ndarray:
    """A multiplicative field (H, W) float32 around 1 with standard deviation `amplitude` and a 1/f amplitude
    spectrum (equal contrast per octave, as natural images have)."""
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    f = np.hypot(fy, fx)
    f[0, 0] = np.inf  # no mean offset
    spectrum = (rng.normal(size=f.shape) + 1j * rng.normal(size=f.shape)) / f
    field = np.fft.irfft2(spectrum, s=(height, width))
    field *= amplitude / max(float(field.std()), 1e-12)
    return (1.0 + field).astype(np.float32)


def dead_leaves(rng: np.random.Generator, height: int = DEFAULT_SIDE, width: int = DEFAULT_SIDE,
                radii: tuple[float, float] = DEFAULT_RADII) -> np.ndarray:
    """A sharp dead-leaves scene, (height, width, 3) uint8 RGB: antialiased opaque disks, radii ~ r**-3 on
    `radii`, drawn until all but exp(-COVERAGE) of it is covered, under a faint 1/f shading."""
    if height < 1 or width < 1:
        raise ValueError(f"scene size must be positive, got {height!r} x {width!r}.")
    count = leaf_count(height, width, radii)
    r = leaf_radii(rng, count, radii)
    border = float(radii[1])
    cy = rng.uniform(-border, height + border, count)
    cx = rng.uniform(-border, width + border, count)
    colours = leaf_colours(rng, count)
    scene = np.empty((height, width, 3), np.uint8)
    scene[:] = leaf_colours(rng, 1)[0]
    scale = 1 << _SHIFT
    for y, x, radius, colour in zip(cy, cx, r, colours):
        centre = (int(round(x * scale)), int(round(y * scale)))
        cv2.circle(scene, centre, int(round(radius * scale)), tuple(int(c) for c in colour), -1, cv2.LINE_AA, _SHIFT)
    shaded = scene.astype(np.float32) * shading(rng, height, width)[:, :, None]
    return np.clip(shaded + 0.5, 0, 255).astype(np.uint8)


def generated_scenes(count: int, seed: int = 0, side: int = DEFAULT_SIDE) -> list[Photo]:
    """`count` dead-leaves scenes as `Photo`s named (and grouped) `dead-leaves-<i>`, each from its own
    generator seeded by (`seed`, i): the same arguments give the same scenes."""
    if count < 0:
        raise ValueError(f"count of generated scenes must be >= 0, got {count!r}.")
    return [Photo(name=f"dead-leaves-{i}", group=f"dead-leaves-{i}",
                  image=dead_leaves(np.random.default_rng([seed, 0xDEAD, i]), side, side))
            for i in range(count)]
