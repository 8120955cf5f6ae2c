"""Accuracy of an export under each camera step alone, on held-out classic-shape crops.

    python benchmarks/camera_steps.py [--model MODEL_DIR] [--images N] [--size PX]

Which step of the camera after the blur (`data_pipeline/camera.py`, the file formats of
`data_pipeline/augment.py`) the model is weakest against; `low_contrast_0.3_0.4` is a hazy
scene (the sharp crop's contrast scaled by 0.3 to 0.4 about its mean before the blur), `dim_0.3_0.5` an
underexposed one (the plain step's finished crops, every pixel times 0.3 to 0.5, saved as 8 bits again: a dim
photograph keeps its blur but loses brightness and grey levels). The same validation photographs
(`blurnet fit`'s split of the bundled photographs), the classic PSF shapes, N crops of PX pixels
(default 128 of 96) per step, each step on every crop and the others off; the export's `serve`
(its views) answers. Prints one line per step (accuracy, recall per class, confusion matrix),
then one JSON line: `{step: {"accuracy", "recall"}}`, `images`, `size`.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's blurnet, installed or not

from blurnet.export import ExportedModel, default_model_dir
from data_pipeline.augment import AugmentConfig
from data_pipeline.camera import CameraConfig
from data_pipeline.classes import CLASS_NAMES
from data_pipeline.dataset import BlurBatchMaker, PipelineConfig
from data_pipeline.degrade import PsfFamilies
from data_pipeline.sources import bundled_splits

BATCH = 32
_NO_CAMERA, _NO_AUGMENT = CameraConfig.none(), AugmentConfig.none()
#: Each step alone (`plain`: none of them; `default`: `blurnet fit`'s whole mix, every step at its own rate).
STEPS = {
    "plain": (_NO_CAMERA, _NO_AUGMENT),
    "colour_jitter": (_NO_CAMERA, dataclasses.replace(AugmentConfig(), jpeg_probability=0.0, palette_probability=0.0,
                                                      underexposure_probability=0.0)),
    "low_contrast_0.3_0.4": (_NO_CAMERA, dataclasses.replace(_NO_AUGMENT, contrast=(0.3, 0.4))),
    "jpeg_50_60": (_NO_CAMERA, dataclasses.replace(_NO_AUGMENT, jpeg_probability=1.0, jpeg_quality=(50, 60))),
    "jpeg_75": (_NO_CAMERA, dataclasses.replace(_NO_AUGMENT, jpeg_probability=1.0, jpeg_quality=(75, 75))),
    "palette": (_NO_CAMERA, dataclasses.replace(_NO_AUGMENT, palette_probability=1.0)),
    "sharpening": (dataclasses.replace(_NO_CAMERA, sharpen_probability=1.0), _NO_AUGMENT),
    "linear_light_shot_noise": (dataclasses.replace(_NO_CAMERA, linear_probability=1.0, shot_noise=(0.0, 0.0006)), _NO_AUGMENT),
    "clipped_highlights": (dataclasses.replace(_NO_CAMERA, linear_probability=1.0, highlight_probability=1.0), _NO_AUGMENT),
    "resampling": (dataclasses.replace(_NO_CAMERA, resample_probability=1.0), _NO_AUGMENT),
    "default": (CameraConfig(), AugmentConfig()),
}
#: Steps made from the plain step's crops after the camera: name -> the range of the factor every pixel is scaled by.
EXPOSURE_STEPS = {"dim_0.3_0.5": (0.3, 0.5)}


def underexposed(images: np.ndarray, factors: tuple[float, float], rng: np.random.Generator) -> np.ndarray:
    """`images` (n, h, w, 3), 0..255, each times a factor drawn from `factors`, rounded to 8-bit levels."""
    scale = rng.uniform(*factors, size=(len(images), 1, 1, 1))
    return np.clip(np.round(np.asarray(images, np.float32) * scale), 0.0, 255.0).astype(np.float32)


def main(argv=None) -> dict:
    """Run every step and return the JSON summary it prints last."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="export folder [default: the bundled model]")
    parser.add_argument("--images", type=int, default=128, help="crops per step (a multiple of 32)")
    parser.add_argument("--size", type=int, default=96, help="crop side in pixels")
    args = parser.parse_args(argv)
    if args.images < BATCH or args.images % BATCH:
        raise SystemExit(f"--images must be a positive multiple of {BATCH}, got {args.images}")
    model = ExportedModel(args.model or default_model_dir())
    photos = bundled_splits(args.size, seed=0)["val"]
    summary, plain = {}, None
    steps = [(step, configs) for step, configs in STEPS.items()] + [(step, None) for step in EXPOSURE_STEPS]
    for step, configs in steps:
        if configs is not None:
            camera, augment = configs
            config = PipelineConfig(image_size=args.size, batch_size=BATCH, seed=5, families=PsfFamilies.classic(),
                                    camera=camera, augment=augment)
            maker = BlurBatchMaker(photos, config, "val", augment=True)
            images, labels = zip(*[maker.make_batch(i)[:2] for i in range(args.images // BATCH)])
            images, labels = np.concatenate(images), np.concatenate(labels)
            if step == "plain":
                plain = images, labels
        else:
            images, labels = underexposed(plain[0], EXPOSURE_STEPS[step], np.random.default_rng(5)), plain[1]
        predicted = np.asarray(model(images)).argmax(axis=1)
        confusion = np.zeros((len(CLASS_NAMES), len(CLASS_NAMES)), int)
        np.add.at(confusion, (labels, predicted), 1)
        recall = {c: round(float(confusion[i, i] / confusion[i].sum()), 3) for i, c in enumerate(CLASS_NAMES)}
        summary[step] = {"accuracy": round(float(np.mean(predicted == labels)), 4), "recall": recall}
        print(f"{step:24} accuracy {summary[step]['accuracy']:.3f}  recall "
              + " ".join(f"{c} {v:.2f}" for c, v in recall.items()) + f"  confusion {confusion.tolist()}", flush=True)
    summary = {**summary, "images": args.images, "size": args.size}
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
