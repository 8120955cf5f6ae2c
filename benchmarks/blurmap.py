"""Blur masks against ground truth: F-measure and MAE on partly blurred photographs.

    python benchmarks/blurmap.py [--data DIR] [--model MODEL_DIR]

DIR (default: `$BLURNET_REALDEV/partial`, where the environment variable names the folder
of the real-photograph check set; without either, the run prints `{"skipped": ...}` and
stops) holds partly blurred
photographs in sub-folders (`defocus/*.jpg`, `motion/*.jpg`, any image extension) and
their ground truth in `masks/`: the photograph `cuhk__out_of_focus0011.jpg` has the mask
`masks/out_of_focus0011.png` (the name without the part up to `__`), white = blurred.
Photographs without a mask are skipped and listed.

Each photograph goes through the model (`saved_models/blurnet-densenet121` or MODEL_DIR)
as `blurnet predict PHOTO --mask FILE.png` does: the working scale (`--scale auto`) cut
into tiles overlapping by half, the per-pixel blur probability (mean of 1 - p_sharp over
the tiles covering a pixel) resized to the photograph's size, and the mask where it is
>= 0.5. Figures per photograph and their mean over photographs:

- F-measure: F_beta of the binary mask against the ground truth, blurred = positive,
  with beta^2 = 0.3 as the blur-detection literature on the CUHK set reports it
  ((1 + b2) P R / (b2 P + R); 0 when nothing is right);
- MAE: mean absolute error of the soft per-pixel blur probability against the binary
  ground truth (0/1); `mae_binary` is the same for the 0/1 mask.

Beside it, a classical baseline: the local variance of the Laplacian (3 x 3 kernel, on
grey levels) in 31 x 31 px windows, log(1 + variance), thresholded per photograph with
Otsu's method; below the threshold = blurred. It has no soft output, so its MAE is that
of its 0/1 mask. For scale, the trivial mask "every pixel blurred" is scored too (most
pixels of these photographs are blurred, and F with beta^2 = 0.3 favours precision).
Last line: JSON with `f_measure`, `mae`, `mae_binary`, `photos`, `skipped`,
`baseline_f_measure`, `baseline_mae`, `all_blurred_f_measure` and `all_blurred_mae`.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's blurnet, installed or not

from blurnet import quiet
from blurnet.blurmap import blur_mask
from blurnet.classify import map_tile_probabilities, mask_probability, prepare
from blurnet.prediction import load_model
from data_pipeline.sources import checkset_folder, list_image_files, read_image, skipped_without_checkset

BETA2 = 0.3
BASELINE_WINDOW = 31
DEFAULT_DATA = checkset_folder("partial")


def f_measure(predicted: np.ndarray, truth: np.ndarray, beta2: float = BETA2) -> tuple[float, float, float]:
    """(F_beta, precision, recall) of a boolean prediction against a boolean ground truth, True = blurred."""
    tp = float(np.logical_and(predicted, truth).sum())
    precision = tp / max(float(predicted.sum()), 1.0)
    recall = tp / max(float(truth.sum()), 1.0)
    if precision + recall == 0:
        return 0.0, precision, recall
    return (1 + beta2) * precision * recall / (beta2 * precision + recall), precision, recall


def laplacian_baseline(image: np.ndarray, window: int = BASELINE_WINDOW) -> np.ndarray:
    """Boolean blur mask (True = blurred): local variance of the Laplacian, log, Otsu threshold per photograph."""
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    lap = cv2.Laplacian(grey, cv2.CV_32F, ksize=3)
    mean = cv2.blur(lap, (window, window))
    variance = np.maximum(cv2.blur(lap * lap, (window, window)) - mean * mean, 0.0)
    score = np.log1p(variance)
    span = float(score.max() - score.min())
    levels = np.zeros(score.shape, np.uint8) if span == 0 else ((score - score.min()) / span * 255).round().astype(np.uint8)
    threshold, _ = cv2.threshold(levels, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return levels <= threshold


def mask_for(photo: Path, masks: Path) -> Path:
    """The ground-truth mask of a photograph: masks/<name after '__'>.png."""
    return masks / f"{photo.stem.split('__', 1)[-1]}.png"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=DEFAULT_DATA, help="folder with photographs in sub-folders and masks/ [default: $BLURNET_REALDEV/partial]")
    parser.add_argument("--model", default=None, help="export folder (default: saved_models/blurnet-densenet121)")
    args = parser.parse_args(argv)
    if args.data is None:
        return skipped_without_checkset("--data")

    data = Path(args.data)
    masks = data / "masks"
    photos = [p for p in list_image_files(data) if masks not in p.parents]
    if not photos:
        raise SystemExit(f"no photographs under {data}")
    quiet.configure()
    quiet.import_tensorflow()
    model = load_model(args.model)
    tile = int(model.image_size)
    print(f"model: {getattr(model, 'folder', args.model)} ({tile} px tiles, map stride {tile // 2} px); data: {data}")
    print(f"{'photograph':<36} {'size':>9} {'blurred':>7} {'F':>6} {'P':>6} {'R':>6} {'MAE':>6}  |  {'base F':>6} {'MAE':>6}  {'s':>5}")

    rows, skipped = [], []
    for photo in photos:
        truth_path = mask_for(photo, masks)
        if not truth_path.exists():
            skipped.append(photo.name)
            print(f"{photo.name:<36} skipped: no mask {truth_path.relative_to(data)}")
            continue
        start = time.perf_counter()
        image = read_image(photo)
        truth = cv2.imread(str(truth_path), cv2.IMREAD_GRAYSCALE) > 127
        if truth.shape != image.shape[:2]:
            skipped.append(photo.name)
            print(f"{photo.name:<36} skipped: mask is {truth.shape[1]} x {truth.shape[0]}, photograph {image.shape[1]} x {image.shape[0]}")
            continue
        prepared = prepare(image, tile, "auto")
        boxes, probs, _ = map_tile_probabilities(model, prepared)
        soft = mask_probability(prepared, boxes, probs)
        predicted = blur_mask(soft) > 0
        f, p, r = f_measure(predicted, truth)
        mae = float(np.abs(soft - truth).mean())
        mae_binary = float((predicted != truth).mean())
        base = laplacian_baseline(image)
        bf, _, _ = f_measure(base, truth)
        bmae = float((base != truth).mean())
        seconds = time.perf_counter() - start
        af, _, _ = f_measure(np.ones_like(truth), truth)
        rows.append((f, mae, mae_binary, bf, bmae, af, 1.0 - float(truth.mean())))
        size = f"{image.shape[1]}x{image.shape[0]}"
        print(f"{photo.name:<36} {size:>9} {truth.mean():>7.0%} {f:>6.3f} {p:>6.3f} {r:>6.3f} {mae:>6.3f}  |  {bf:>6.3f} {bmae:>6.3f}  {seconds:>5.1f}")

    if not rows:
        raise SystemExit("no photograph with a mask")
    f, mae, mae_binary, bf, bmae, af, amae = (float(np.mean(column)) for column in zip(*rows))
    print(f"mean over {len(rows)} photographs (blurred = positive, F with beta^2 = {BETA2}):")
    print(f"  blurnet mask:       F-measure {f:.3f}, MAE {mae:.3f} (soft probability), {mae_binary:.3f} (0/1 mask)")
    print(f"  Laplacian baseline: F-measure {bf:.3f}, MAE {bmae:.3f} (0/1 mask; local variance in {BASELINE_WINDOW} px windows, Otsu)")
    print(f"  every pixel blurred: F-measure {af:.3f}, MAE {amae:.3f}")
    if skipped:
        print(f"skipped (no usable mask): {', '.join(skipped)}")
    print(json.dumps({"f_measure": round(f, 4), "mae": round(mae, 4), "mae_binary": round(mae_binary, 4), "photos": len(rows),
                      "skipped": skipped, "baseline_f_measure": round(bf, 4), "baseline_mae": round(bmae, 4),
                      "all_blurred_f_measure": round(af, 4), "all_blurred_mae": round(amae, 4)}))


if __name__ == "__main__":
    main()
