"""Per-tile blur map (`blurnet predict --map FILE.png`).

The map shows the photograph at the scale the model saw it (after `--scale`).
Every tile is filled with its predicted class's colour, with an opacity
proportional to the model's confidence (the top probability: 0.25 -> clear,
1.0 -> `MAX_ALPHA`); flat tiles, ignored by the aggregation, get a grey outline
only. A legend strip below the image names the colours. The PNG is written with
OpenCV, atomically (temporary file + `os.replace`).

Size: width `max(w, LEGEND_MIN_WIDTH)`, height `h + LEGEND_HEIGHT`, where `w x h`
is the scaled photograph.
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


def map_size(height: int, width: int) -> tuple[int, int]:
    """(height, width) of the map of a `height x width` scaled photograph."""
    return height + LEGEND_HEIGHT, max(width, LEGEND_MIN_WIDTH)


def render_blur_map(image: np.ndarray, boxes, probabilities: np.ndarray, textures=None, min_texture: float = 0.0) -> np.ndarray:
    """The blur map as an RGB uint8 array (see the module docstring)."""
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
        if textures[i] < min_texture:
            continue
        k = int(np.argmax(probabilities[i]))
        confidence = float(probabilities[i, k])
        a = MAX_ALPHA * np.clip((confidence - 1 / len(CLASS_NAMES)) / (1 - 1 / len(CLASS_NAMES)), 0.0, 1.0)
        colour[top : top + th, left : left + tw] = CLASS_COLOURS[CLASS_NAMES[k]]
        alpha[top : top + th, left : left + tw] = a
    out = (base * (1 - alpha) + colour * alpha).clip(0, 255).astype(np.uint8)
    for i in range(len(boxes)):  # thin tile grid, flat tiles outlined in grey
        top, left, th, tw = boxes[i]
        edge = FLAT_COLOUR if textures[i] < min_texture else (255, 255, 255)
        cv2.rectangle(out, (left, top), (left + tw - 1, top + th - 1), edge, 1)

    mh, mw = map_size(h, w)
    canvas = np.full((mh, mw, 3), 255, np.uint8)
    canvas[:h, :w] = out
    x = 6
    entries = [(name, CLASS_COLOURS[name]) for name in CLASS_NAMES] + [("flat (ignored)", FLAT_COLOUR)]
    for name, rgb in entries:
        cv2.rectangle(canvas, (x, h + 7), (x + 14, h + 21), rgb, -1)
        cv2.putText(canvas, name, (x + 18, h + 19), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        x += 24 + 8 * len(name)
    return canvas


def write_blur_map(path: str | os.PathLike, image: np.ndarray, boxes, probabilities, textures=None, min_texture: float = 0.0) -> Path:
    """Render the blur map and write it as PNG to `path`, atomically; returns the path."""
    path = Path(path)
    canvas = render_blur_map(image, boxes, probabilities, textures, min_texture)
    ok, data = cv2.imencode(".png", canvas[:, :, ::-1])
    if not ok:
        raise OSError(f"{path}: PNG encoding failed")
    with atomic_file(path) as tmp:
        tmp.write_bytes(data.tobytes())
    return path
