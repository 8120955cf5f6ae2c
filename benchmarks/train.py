"""Training and serving throughput: the real pipeline against in-memory tensors, SavedModel against Keras.

    python benchmarks/train.py

1. DenseNet121 (`create_model(weights=None)`) trained with `model.fit` for the
   same number of steps on (a) the real blur pipeline and (b) the same number of
   in-memory tensors. The ratio shows whether the pipeline ever starves training
   (target >= 0.9).
2. The exported SavedModel's `serve` endpoint against Keras `predict` on the same
   batch (target >= 0.9).

Both pairs are measured side by side in one run, alternating, best of three.
Last line: JSON with `fit_pipeline_images_per_s`, `fit_tensors_images_per_s`,
`fit_ratio`, `serve_images_per_s`, `predict_images_per_s`, `serve_ratio`.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import tensorflow as tf

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's blurnet, installed or not

from blurnet.export import export_model
from blurnet.model import create_model
from data_pipeline.classes import CLASS_NAMES, BlurRanges
from data_pipeline.dataset import BlurBatchMaker, PipelineConfig
from data_pipeline.sources import bundled_splits

IMAGE_SIZE, BATCH, STEPS, ROUNDS = 128, 32, 6, 3


class _Timer(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds = time.perf_counter() - self.start


def fit_rate(model, dataset) -> float:
    """Images/s of one `fit` epoch of STEPS steps (the graph is already built)."""
    timer = _Timer()
    model.fit(dataset, steps_per_epoch=STEPS, epochs=1, verbose=0, callbacks=[timer])
    return STEPS * BATCH / timer.seconds


def main():
    photos = bundled_splits(IMAGE_SIZE, seed=0)["train"]
    maker = BlurBatchMaker(photos, PipelineConfig(image_size=IMAGE_SIZE, batch_size=BATCH), "train")
    pipeline = maker.dataset()
    batches = [maker.make_batch(i) for i in range(STEPS)]
    x = np.concatenate([b[0] for b in batches])
    y = np.concatenate([b[1] for b in batches])
    tensors = tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH).repeat().prefetch(2)

    model = create_model(weights=None)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(tensors, steps_per_epoch=2, epochs=1, verbose=0)  # build the training graph
    fit_pipe, fit_tens = [], []
    for _ in range(ROUNDS):
        fit_pipe.append(fit_rate(model, pipeline))
        fit_tens.append(fit_rate(model, tensors))
    fp, ft = max(fit_pipe), max(fit_tens)
    print(f"fit, real pipeline:     {fp:7.1f} images/s ({IMAGE_SIZE} px, batch {BATCH}, {STEPS} steps, best of {ROUNDS})")
    print(f"fit, in-memory tensors: {ft:7.1f} images/s")
    print(f"pipeline / tensors: {fp / ft:.3f} (target >= 0.9)")

    with tempfile.TemporaryDirectory() as tmp:
        meta = {"classes": list(CLASS_NAMES), "image_size": IMAGE_SIZE, "blur_ranges": BlurRanges().to_dict()}
        folder = export_model(model, os.path.join(tmp, "m"), meta)
        loaded = tf.saved_model.load(str(folder))  # keep a reference: it owns the variables
        serve = loaded.serve
        batch = tf.constant(x[:BATCH])
        serve(batch), model.predict(x[:BATCH], batch_size=BATCH, verbose=0)  # warm up both
        serve_t, predict_t = [], []
        for _ in range(ROUNDS * 2):
            start = time.perf_counter()
            serve(batch).numpy()
            serve_t.append(time.perf_counter() - start)
            start = time.perf_counter()
            model.predict(x[:BATCH], batch_size=BATCH, verbose=0)
            predict_t.append(time.perf_counter() - start)
    sr, pr = BATCH / min(serve_t), BATCH / min(predict_t)
    print(f"SavedModel serve: {sr:7.1f} images/s; Keras predict: {pr:7.1f} images/s (batch {BATCH}, best of {ROUNDS * 2})")
    print(f"serve / predict: {sr / pr:.3f} (target >= 0.9)")
    print(json.dumps({
        "fit_pipeline_images_per_s": round(fp, 2), "fit_tensors_images_per_s": round(ft, 2), "fit_ratio": round(fp / ft, 3),
        "serve_images_per_s": round(sr, 2), "predict_images_per_s": round(pr, 2), "serve_ratio": round(sr / pr, 3),
    }))


if __name__ == "__main__":
    main()
