"""Benchmark `blurnet predict` on a folder of 12-megapixel camera JPEGs: photographs/s, agreement with the
full computation, and the variance of the Laplacian beside it.

The photographs (4,000 x 3,000 px, JPEG quality 90) are made from the bundled photographs: four of
them in a 2 x 2 mosaic at their own scale (1,024 x 768 px, the working scale `--scale auto` brings
12 megapixels to), blurred there with the SPEC's shapes (Gaussian, straight streak, disk; strengths
drawn over the whole training ranges) or left sharp, given sensor noise, and enlarged 3.9 times, so
the blur sits in the training ranges at the working scale, as it does for a camera's photograph of
that scene. Photographs from the held-out and validation groups fill every mosaic's first cell; the
other three cells may be training photographs, so the `accuracy` and `full_accuracy` printed here
are no held-out figures (`benchmarks/accuracy.py` gives those): this benchmark measures speed and
agreement.

In one run, on the same files:
- `blurnet.predict(folder)` as `blurnet predict FOLDER` runs it (JPEGs decoded reduced,
  at most `TILE_BUDGET` tiles a pyramid level, `FAST_VIEWS` view): photographs/s with the model
  loaded (`startup_s`, the model load, is printed beside it);
- the same with `full=True` (every textured tile, the export's own 8 views): the reference;
  `agreement_with_full` is the fraction of photographs with the same label;
- the first 8 again with `--map` (every map tile, the export's views): `map_photos_per_s`;
- the variance of the Laplacian of the full-size grey photograph, decoded in full (what a user of
  that measure runs): `laplacian_photos_per_s`.

Run: `python benchmarks/predict.py [--photos N] [--model DIR]`. The last line is JSON with keys
photos_per_s, agreement_with_full, laplacian_photos_per_s (and the rest of the figures).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from blurnet.prediction import load_model, predict  # noqa: E402
from data_pipeline.classes import CLASS_NAMES, BlurRanges  # noqa: E402
from data_pipeline.degrade import BlurParams, degrade  # noqa: E402
from data_pipeline.sources import bundled_photo_paths, read_image  # noqa: E402

SIZE = (4000, 3000)  # width, height: 12 megapixels
WORKING = (1024, 768)  # what --scale auto brings SIZE to
MAP_PHOTOS = 8  # photographs timed with --map
HELD_OUT = ("camera", "gravel", "astronaut", "motorcycle_left", "motorcycle_right", "ihc")


def cell(photo: np.ndarray, width: int, height: int) -> np.ndarray:
    """The centre `height` x `width` of `photo`, enlarged (cubic) only when it is smaller."""
    h, w = photo.shape[:2]
    grow = max(1.0, height / h, width / w)
    if grow > 1.0:
        photo = cv2.resize(photo, (int(np.ceil(w * grow)), int(np.ceil(h * grow))), interpolation=cv2.INTER_CUBIC)
        h, w = photo.shape[:2]
    top, left = (h - height) // 2, (w - width) // 2
    return photo[top : top + height, left : left + width]


def make_photos(folder: Path, count: int, seed: int = 0) -> list[tuple[str, str]]:
    """`count` 12-megapixel JPEGs in `folder`, the classes in turn; returns (path, true class) pairs."""
    rng = np.random.default_rng(seed)
    photos = {path.stem: read_image(path) for _, path in bundled_photo_paths()}
    names = sorted(photos)
    first = [n for n in HELD_OUT if n in photos]
    ranges = BlurRanges()
    out = []
    for i in range(count):
        label = i % len(CLASS_NAMES)
        chosen = [first[i % len(first)]] + list(rng.choice([n for n in names if n != first[i % len(first)]], 3, replace=False))
        w, h = WORKING[0] // 2, WORKING[1] // 2
        cells = [cell(photos[n], w, h) for n in chosen]
        mosaic = np.vstack([np.hstack(cells[:2]), np.hstack(cells[2:])]).astype(np.float32)
        low_high = ranges.strength_range(CLASS_NAMES[label])
        strength = float(rng.uniform(*low_high)) if low_high else 0.0
        params = BlurParams(label, strength, float(rng.uniform(0, 180)), float(rng.uniform(0.5, 2.0)))
        blurred = degrade(mosaic, params, rng)
        big = cv2.resize(blurred, SIZE, interpolation=cv2.INTER_CUBIC).clip(0, 255).round().astype(np.uint8)
        path = folder / f"{i:03d}_{CLASS_NAMES[label]}.jpg"
        cv2.imwrite(str(path), big[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
        out.append((str(path), CLASS_NAMES[label]))
    return out


def laplacian_variance(path: str) -> float:
    """The variance of the Laplacian of the full-size grey photograph, decoded in full."""
    grey = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=32, help="number of 12-megapixel photographs")
    parser.add_argument("--model", default=None, help="export folder [default: the bundled model]")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="blurnet-bench-") as tmp:
        made, make_s = timed(lambda: make_photos(Path(tmp), args.photos))
        paths, truth = [p for p, _ in made], [t for _, t in made]
        print(f"{len(paths)} photographs of {SIZE[0]} x {SIZE[1]} px, JPEG 90, made in {make_s:.0f} s")
        model, startup_s = timed(lambda: load_model(args.model))
        _, single_s = timed(model.load_single_view)
        predict(paths[:1], model)  # warm-up: traces the network for the tile shape
        fast, fast_s = timed(lambda: predict(tmp, model))
        full, full_s = timed(lambda: predict(tmp, model, full=True))
        some = paths[:MAP_PHOTOS]
        _, map_s = timed(lambda: predict(some, model, map_path=Path(tmp) / "maps" / "map.png"))
        _, laplacian_s = timed(lambda: [laplacian_variance(p) for p in paths])
    fast_labels = {Path(r["path"]).name: r["label"] for r in fast}
    full_labels = {Path(r["path"]).name: r["label"] for r in full}
    names = [Path(p).name for p in paths]
    agree = sum(fast_labels[n] == full_labels[n] for n in names) / len(names)
    accuracy = {kind: sum(labels[n] == t for n, t in zip(names, truth)) / len(names)
                for kind, labels in (("fast", fast_labels), ("full", full_labels))}
    for n in names:
        if fast_labels[n] != full_labels[n]:
            print(f"  disagree: {n}: default {fast_labels[n]}, full {full_labels[n]}")
    result = {
        "photos_per_s": round(len(paths) / fast_s, 3),
        "agreement_with_full": round(agree, 4),
        "laplacian_photos_per_s": round(len(paths) / laplacian_s, 3),
        "full_photos_per_s": round(len(paths) / full_s, 3),
        "map_photos_per_s": round(len(some) / map_s, 3),
        "accuracy": round(accuracy["fast"], 4),
        "full_accuracy": round(accuracy["full"], 4),
        "startup_s": round(startup_s + single_s, 2),
        "photos": len(paths),
    }
    print(f"blurnet predict : {result['photos_per_s']:.2f} photos/s (model loaded in {result['startup_s']:.1f} s), "
          f"accuracy {accuracy['fast']:.3f}")
    print(f"full computation: {result['full_photos_per_s']:.2f} photos/s, accuracy {accuracy['full']:.3f}; "
          f"labels agree on {agree:.1%}")
    print(f"with --map      : {result['map_photos_per_s']:.2f} photos/s (on {len(some)} of them)")
    print(f"Laplacian var.  : {result['laplacian_photos_per_s']:.2f} photos/s "
          f"({result['laplacian_photos_per_s'] / result['photos_per_s']:.1f} x blurnet's rate)")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
