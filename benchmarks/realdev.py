"""Whole-photo labels of `blurnet predict` on real photographs, against their folder labels.

    python benchmarks/realdev.py [--data DIR] [--model MODEL_DIR] [--full] [--smooth SIGMA]

DIR (default: `$BLURNET_REALDEV/whole`, where the environment variable names the folder
of the real-photograph check set; without either, the run prints `{"skipped": ...}` and
stops) is a labelled folder,
`DIR/<class>/<file>`, of real photographs: real camera shake, real lens defocus and
the same scenes sharp. Every photograph goes through `blurnet.predict` exactly as
`blurnet predict DIR` would (auto scale, scale pyramid, up to 24 tiles a level in one
view; with `--full`, every textured tile in 8 views, as `blurnet predict --full`). `--smooth
SIGMA` first blurs every photograph with a Gaussian of SIGMA pixels: whether a pixel-fine
pattern (the dithering of a palette image, sensor noise) decides a label. Prints one
line per photograph (true class, label, the level's scale, probabilities, area), the
confusion matrix (rows: true classes, columns: labels, in class order), the recall
of every class present and, per true class, what the tiles say: the mean over its
photographs of `area` (the fraction of the answering level's textured tiles whose own
answer is each class), which shows a blur that the whole-photo label outvotes. Last
line: JSON with `accuracy`, `n_images`, `recall` (by class), `confusion_matrix` and
`tile_area` (by true class, then by tile answer).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's blurnet, installed or not

from blurnet.prediction import load_model, predict
from data_pipeline.classes import CLASS_NAMES
from data_pipeline.sources import ImageReadError, checkset_folder, list_image_files, read_image, skipped_without_checkset

DEFAULT_DATA = checkset_folder("whole")


def smoothed(path: str, sigma: float):
    """The photograph at `path` blurred by a Gaussian of `sigma` pixels (uint8 RGB), or `path` when it cannot be read."""
    try:
        image = read_image(path)
    except ImageReadError:
        return path
    return np.clip(cv2.GaussianBlur(image.astype(np.float32), (0, 0), sigma), 0, 255).round().astype(np.uint8)


def main(argv=None) -> dict:
    """Run the check and return the JSON summary it prints last."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=DEFAULT_DATA, help="labelled folder DIR/<class>/<file> [default: $BLURNET_REALDEV/whole]")
    parser.add_argument("--model", default=None, help="export folder [default: the bundled model]")
    parser.add_argument("--full", action="store_true", help="every textured tile in the export's views (blurnet predict --full)")
    parser.add_argument("--smooth", type=float, default=0.0, metavar="SIGMA",
                        help="Gaussian-blur every photograph by SIGMA pixels before it is classified [default: 0, as read]")
    args = parser.parse_args(argv)
    if args.data is None:
        return skipped_without_checkset("--data")
    items = [(c, str(p)) for c in CLASS_NAMES if (Path(args.data) / c).is_dir() for p in list_image_files(Path(args.data) / c)]
    if not items:
        raise SystemExit(f"no labelled photographs in {args.data!r} (expected DIR/<class>/<file>)")
    inputs = [p for _, p in items]
    if args.smooth > 0:  # unreadable files keep their path, so that predict reports them
        inputs = [smoothed(p, args.smooth) for p in inputs]
    records = predict(inputs, model=load_model(args.model), full=args.full)
    confusion = np.zeros((len(CLASS_NAMES), len(CLASS_NAMES)), int)
    areas = {c: [] for c in CLASS_NAMES}
    for (true, path), r in zip(items, records):
        if "error" in r:
            print(f"{true:8} ERROR {r['error']}  {os.path.basename(path)}")
            continue
        confusion[CLASS_NAMES.index(true), CLASS_NAMES.index(r["label"])] += 1
        areas[true].append([r["area"][c] for c in CLASS_NAMES])
        probs = " ".join(f"{r['probabilities'][c]:.2f}" for c in CLASS_NAMES)
        print(f"{true:8} -> {r['label']:8} scale {r['scale']:5.2f}  p [{probs}]  blurred area {1 - r['area']['sharp']:4.0%}  "
              f"{os.path.basename(path)}")
    n = int(confusion.sum())
    recall = {c: round(confusion[i, i] / confusion[i].sum(), 4) for i, c in enumerate(CLASS_NAMES) if confusion[i].sum()}
    print("confusion matrix (rows: true " + ", ".join(CLASS_NAMES) + "):")
    for i, c in enumerate(CLASS_NAMES):
        print(f"  {c:>8}: {confusion[i].tolist()}")
    accuracy = float(np.trace(confusion) / n) if n else 0.0
    print(f"accuracy {np.trace(confusion)}/{n} = {accuracy:.3f}; recall " + ", ".join(f"{c} {v:.3f}" for c, v in recall.items()))
    tile_area = {true: dict(zip(CLASS_NAMES, np.round(np.mean(a, axis=0), 3).tolist())) for true, a in areas.items() if a}
    print("textured tiles answering each class, mean over the photographs of each true class:")
    for true, shares in tile_area.items():
        print(f"  {true:>8}: " + ", ".join(f"{c} {v:.2f}" for c, v in shares.items()))
    summary = {"accuracy": round(accuracy, 4), "n_images": n, "recall": recall, "confusion_matrix": confusion.tolist(),
               "tile_area": tile_area}
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
