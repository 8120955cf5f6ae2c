"""Benchmark `blurnet predict` on 12-megapixel photographs: end to end against model only.

Generates three 4000 x 3000 photographs by upscaling bundled photographs, writes
them as JPEG (quality 92) to a temporary folder, then measures, in one run:

- end to end: `blurnet.predict.predict(paths)`: read and decode the JPEG, scale
  (auto: to 1024 px), tile, texture, model, aggregate (decoding of the next
  photograph overlaps the model's work on the current one);
- model only: the model called on exactly the same tile batches, already in memory.

ratio = end-to-end photos/s / model-only photos/s (target >= 0.8). Uses
`saved_models/blurnet-densenet121` when it exists, else a tiny untrained
`create_model(weights=None)` export (32 px tiles) built in a temporary folder.

Run: `python benchmarks/predict.py`. The last line is JSON with keys
photos_per_s, model_only_photos_per_s, ratio.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cv2

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from blurnet.classify import prepare, tile_probabilities  # noqa: E402
from blurnet.predict import load_model, predict  # noqa: E402
from data_pipeline.classes import CLASS_NAMES, BlurRanges  # noqa: E402
from data_pipeline.sources import bundled_photo_paths, read_image  # noqa: E402

PHOTOS = ("coffee", "chelsea", "astronaut")
SIZE = (4000, 3000)  # width, height: 12 megapixels
REPEATS = 2


def make_photos(folder: Path) -> list[str]:
    sources = dict(bundled_photo_paths())
    paths = []
    for name in PHOTOS:
        image = cv2.resize(read_image(sources[name]), SIZE, interpolation=cv2.INTER_CUBIC)
        path = folder / f"{name}_12mp.jpg"
        cv2.imwrite(str(path), image[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 92])
        paths.append(str(path))
    return paths


def find_model(workdir: Path) -> tuple[str, str]:
    bundled = Path(__file__).resolve().parent.parent / "saved_models" / "blurnet-densenet121"
    if (bundled / "saved_model.pb").is_file():
        return str(bundled), f"trained export {bundled}"
    from blurnet.export import export_model
    from blurnet.model import create_model

    target = workdir / "tiny-export"
    metadata = {"classes": list(CLASS_NAMES), "image_size": 32, "blur_ranges": BlurRanges().to_dict(), "backbone": "densenet121", "weights": "none"}
    export_model(create_model(weights=None), target, metadata)
    return str(target), "no trained export found: tiny untrained DenseNet121 export (weights=None, 32 px tiles) built in a temporary folder"


def best_of(fn, repeats: int = REPEATS) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> dict:
    with tempfile.TemporaryDirectory(prefix="blurnet-bench-") as tmp:
        tmp = Path(tmp)
        paths = make_photos(tmp)
        model_dir, description = find_model(tmp)
        print(f"model: {description}")
        model = load_model(model_dir)
        tile = model.image_size
        prepared = [prepare(read_image(p), tile, "auto") for p in paths]
        n_tiles = sum(len(p.boxes) for p in prepared)
        print(f"photographs: {len(paths)} x {SIZE[0]} x {SIZE[1]} px JPEG; auto scale {prepared[0].scale:.3f} -> "
              f"{prepared[0].image.shape[1]} x {prepared[0].image.shape[0]} px; {tile} px tiles, {n_tiles} tiles in all")

        tile_probabilities(model, prepared[0])  # warm-up: first call traces and allocates
        model_s = best_of(lambda: [tile_probabilities(model, p) for p in prepared])
        end_s = best_of(lambda: predict(paths, model))
        records = predict(paths, model)
        assert all("error" not in r for r in records), records

    photos_per_s = len(paths) / end_s
    model_only = len(paths) / model_s
    ratio = photos_per_s / model_only
    print(f"model only : {model_s:.2f} s for {len(paths)} photographs = {model_only:.3f} photos/s ({n_tiles / model_s:.0f} tiles/s)")
    print(f"end to end : {end_s:.2f} s for {len(paths)} photographs = {photos_per_s:.3f} photos/s (decode, scale, tile, model, aggregate)")
    print(f"ratio      : {ratio:.3f} (target >= 0.8)")
    result = {"photos_per_s": round(photos_per_s, 4), "model_only_photos_per_s": round(model_only, 4), "ratio": round(ratio, 4)}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
