"""Pipeline throughput beside a bare cv2.filter2D loop and DenseNet121 training, in one run.

    python benchmarks/pipeline.py

Prints samples/s of the full tf.data pipeline (crop, augment, blur, noise, JPEG,
batch) at 128 px on the bundled photographs, of a single-threaded loop that only
calls cv2.filter2D with the same kernels, and DenseNet121's training images/s on
in-memory tensors. Last line: JSON with `pipeline_samples_per_s`,
`filter2d_samples_per_s`, `train_images_per_s`.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's blurnet, installed or not

from data_pipeline.dataset import BlurBatchMaker, PipelineConfig
from data_pipeline.degrade import make_psf, sample_params
from data_pipeline.sources import bundled_splits

IMAGE_SIZE, BATCH = 128, 32


def pipeline_rate(maker: BlurBatchMaker, batches: int = 120) -> float:
    iterator = iter(maker.dataset())
    next(iterator)  # warm-up: thread pool, AUTOTUNE
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    rate = batches * BATCH / (time.perf_counter() - start)
    del iterator
    return rate


def filter2d_rate(maker: BlurBatchMaker, samples: int = 2000) -> float:
    rng = np.random.default_rng(0)
    size = maker.source_crop_size
    crop = maker.croppers[0].crop(rng, size).astype(np.float32)
    kernels = [make_psf(sample_params(rng, i % 4))[::-1, ::-1].copy() for i in range(samples)]
    previous = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        start = time.perf_counter()
        for k in kernels:
            cv2.filter2D(crop, cv2.CV_32F, k, borderType=cv2.BORDER_REFLECT)
        return samples / (time.perf_counter() - start)
    finally:
        cv2.setNumThreads(previous)


def train_rate(steps: int = 6) -> float:
    import keras

    model = keras.applications.DenseNet121(weights=None, input_shape=(IMAGE_SIZE, IMAGE_SIZE, 3), classes=4)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    x = np.random.default_rng(0).uniform(0, 255, (BATCH, IMAGE_SIZE, IMAGE_SIZE, 3)).astype(np.float32)
    y = np.arange(BATCH) % 4
    model.train_on_batch(x, y)  # compile and warm up
    start = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, y)
    return steps * BATCH / (time.perf_counter() - start)


def main():
    photos = bundled_splits(IMAGE_SIZE, seed=0)["train"]
    maker = BlurBatchMaker(photos, PipelineConfig(image_size=IMAGE_SIZE, batch_size=BATCH), "train")
    pipeline = pipeline_rate(maker)
    print(f"pipeline (crop, augment, blur, noise, JPEG, batch; tf.data AUTOTUNE): {pipeline:8.0f} samples/s")
    print(f"texture-aware crops: {100 * maker.rejection_rate():.1f} % of candidates rejected as too flat or blurred "
          f"({100 * maker.rejection_rate(soft=True):.1f} % as blurred)")
    filt = filter2d_rate(maker)
    print(f"bare cv2.filter2D loop, 1 thread, same kernels, {maker.source_crop_size} px: {filt:8.0f} samples/s")
    train = train_rate()
    print(f"DenseNet121 training, in-memory tensors, {IMAGE_SIZE} px, batch {BATCH}: {train:8.1f} images/s")
    print(f"pipeline / filter2D loop: {pipeline / filt:.2f}x; pipeline / training: {pipeline / train:.1f}x (target >= 20x)")
    print(json.dumps({
        "pipeline_samples_per_s": round(pipeline, 1),
        "filter2d_samples_per_s": round(filt, 1),
        "train_images_per_s": round(train, 2),
    }))


if __name__ == "__main__":
    main()
