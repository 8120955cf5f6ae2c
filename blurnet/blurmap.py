"""Blur map (`blurnet predict --map FILE.png`) and blur mask (`--mask FILE.png`).

Both are drawn from the map tiles of the working scale (`blurnet.classify.map_boxes`:
tiles of the training crop side with a stride of half a tile, so they overlap
by half). Every map tile counts, flat ones included.

**Map.** The photograph at the scale the model saw it (after `--scale`). Every
tile is filled with its predicted class's colour, with an opacity proportional
to the model's confidence (the top probability: 0.25 -> clear, 1.0 ->
`MAX_ALPHA`); where tiles overlap, the more confident one shows. Flat tiles
(texture under 4.0, left out of the whole-photo answer) are coloured by their
answer too and outlined in grey. A legend strip below the image names the
colours. Size: width `max(w, LEGEND_MIN_WIDTH)`, height `h + LEGEND_HEIGHT`,
where `w x h` is the scaled photograph.

**Mask.** A per-pixel blur probability: each pixel's value is the mean, over the
map tiles covering it, of 1 - p_sharp (`blur_probability_map`), resized to the
original photograph's size (`cv2.INTER_LINEAR`). The PNG is a binary 8-bit grey
image of that size: 255 (white) where the probability is >= 0.5
(`MASK_THRESHOLD`), i.e. blurred, 0 elsewhere.

PNGs are written with OpenCV, atomically (temporary file + `os.replace`).
"""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from blurnet.atomic import atomic_file
from data_pipeline.classes import CLASS_NAMES

# RGB colours per class.
CLASS_COLOURS = {
    "sharp": (46, 160, 67),
    "gaussian": (31, 119, 230),
    "motion": (230, 60, 40),
    "defocus": (240, 170, 20),
}
FLAT_COLOUR = (150, 150, 150)
MAX_ALPHA = 0.6
LEGEND_HEIGHT = 28
LEGEND_MIN_WIDTH = 420
MASK_THRESHOLD = 0.5


def map_size(height: int, width: int) -> tuple[int, int]:
    """(height, width) of the map of a `height x width` scaled photograph."""
    return height + LEGEND_HEIGHT, max(width, LEGEND_MIN_WIDTH)


def render_blur_map(image: np.ndarray, boxes, probabilities: np.ndarray, textures=None, min_texture: float = 0.0) -> np.ndarray:
    """The blur map as an RGB uint8 array (see the module docstring); tiles with texture < `min_texture` are outlined in grey."""
    image = np.asarray(image, np.uint8)
    h, w = image.shape[:2]
    probabilities = np.asarray(probabilities, np.float64)
    textures = np.full(len(boxes), np.inf) if textures is None else np.asarray(textures, np.float64)
    base = image.astype(np.float32)
    colour = np.zeros_like(base)
    alpha = np.zeros((h, w, 1), np.float32)
    # Draw the least confident tiles first so that overlaps show the surer answer.
    order = np.argsort(probabilities.max(axis=1))
    for i in order:
        top, left, th, tw = boxes[i]
        k = int(np.argmax(probabilities[i]))
        confidence = float(probabilities[i, k])
        a = MAX_ALPHA * np.clip((confidence - 1 / len(CLASS_NAMES)) / (1 - 1 / len(CLASS_NAMES)), 0.0, 1.0)
        colour[top : top + th, left : left + tw] = CLASS_COLOURS[CLASS_NAMES[k]]
        alpha[top : top + th, left : left + tw] = a
    out = (base * (1 - alpha) + colour * alpha).clip(0, 255).astype(np.uint8)
    flat = textures < min_texture
    for i in list(np.flatnonzero(~flat)) + list(np.flatnonzero(flat)):  # thin tile grid; flat tiles outlined in grey, on top
        top, left, th, tw = boxes[i]
        edge = FLAT_COLOUR if flat[i] else (255, 255, 255)
        cv2.rectangle(out, (left, top), (left + tw - 1, top + th - 1), edge, 1)

    mh, mw = map_size(h, w)
    canvas = np.full((mh, mw, 3), 255, np.uint8)
    canvas[:h, :w] = out
    x = 6
    entries = [(name, CLASS_COLOURS[name]) for name in CLASS_NAMES] + [("flat (outline)", FLAT_COLOUR)]
    for name, rgb in entries:
        cv2.rectangle(canvas, (x, h + 7), (x + 14, h + 21), rgb, -1)
        cv2.putText(canvas, name, (x + 18, h + 19), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        x += 24 + 8 * len(name)
    return canvas


def write_blur_map(path: str | os.PathLike, image: np.ndarray, boxes, probabilities, textures=None, min_texture: float = 0.0) -> Path:
    """Render the blur map and write it as PNG to `path`, atomically; returns the path."""
    path = Path(path)
    canvas = render_blur_map(image, boxes, probabilities, textures, min_texture)
    return _write_png(path, np.ascontiguousarray(canvas[:, :, ::-1]))


def _write_png(path: Path, array: np.ndarray) -> Path:
    ok, data = cv2.imencode(".png", array)
    if not ok:
        raise OSError(f"{path}: PNG encoding failed")
    with atomic_file(path) as tmp:
        tmp.write_bytes(data.tobytes())
    return path


def blur_probability_map(shape, boxes, probabilities) -> np.ndarray:
    """Per-pixel blur probability (float32 HxW, 0..1): the mean of 1 - p_sharp over the tiles (boxes) covering each pixel.

    `shape`: (height, width[, ...]) of the image the boxes cut; `boxes`: (top, left,
    tile_height, tile_width); `probabilities`: `(len(boxes), classes)`, sharp first.
    Pixels no box covers get 0.
    """
    h, w = int(shape[0]), int(shape[1])
    probabilities = np.asarray(probabilities, np.float64)
    if probabilities.ndim != 2 or len(probabilities) != len(boxes):
        raise ValueError(f"probabilities must have one row per box ({len(boxes)} boxes), got shape {probabilities.shape}")
    total = np.zeros((h, w), np.float64)
    count = np.zeros((h, w), np.float64)
    for (top, left, th, tw), p in zip(boxes, probabilities):
        total[top : top + th, left : left + tw] += 1.0 - p[0]
        count[top : top + th, left : left + tw] += 1.0
    return np.clip(total / np.maximum(count, 1.0), 0.0, 1.0).astype(np.float32)


def resize_probability(probability: np.ndarray, height: int, width: int) -> np.ndarray:
    """A probability map resized to `height x width` (`cv2.INTER_LINEAR`), float32 clipped to 0..1."""
    probability = np.asarray(probability, np.float32)
    if probability.shape[:2] != (height, width):
        probability = cv2.resize(probability, (int(width), int(height)), interpolation=cv2.INTER_LINEAR)
    return np.clip(probability, 0.0, 1.0)


def blur_mask(probability: np.ndarray, threshold: float = MASK_THRESHOLD) -> np.ndarray:
    """The binary mask (uint8: 255 = blurred, 0 = sharp) of a blur probability map: probability >= `threshold`."""
    return (np.asarray(probability) >= threshold).astype(np.uint8) * np.uint8(255)  # uint8 throughout: a mask is photo-sized


def write_blur_mask(path: str | os.PathLike, probability: np.ndarray, threshold: float = MASK_THRESHOLD) -> Path:
    """Write `blur_mask(probability)` as an 8-bit grey PNG to `path`, atomically; returns the path."""
    return _write_png(Path(path), blur_mask(probability, threshold))
