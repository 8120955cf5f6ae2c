"""Time to the end of the first training step, with and without the training variables made before `fit`.

    python benchmarks/fit_start.py [--backbone densenet121] [--image-size 64] [--rounds 1]

Keras makes the optimizer slots and the compiled loss and metric variables
inside the first trace of the training step when no `tf.distribute` strategy
is in scope, and TensorFlow then traces the step a second time.
`blurnet.model.create_training_variables` makes them beforehand, as `blurnet
fit` does before every stage. Each round builds the model as `fit` does
(`create_model(weights=None, spectrum=True)`, `compile_model`) twice and times
one epoch of one step on in-memory tensors: Keras alone and with the
variables made first (their making counted), in alternating order (Keras
alone first in odd rounds), after a warm-up fit of a one-layer model that
loads TensorFlow's kernels. The graph building dominates both. Last line:
JSON with `keras_alone_s`, `prepared_s` (best of the rounds), `speedup` and
`rounds`.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import tensorflow as tf

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's blurnet, installed or not

from blurnet.model import create_model, create_training_variables
from blurnet.train import compile_model


def seconds_to_first_step(backbone: str, data: tf.data.Dataset, prepared: bool) -> float:
    """Wall time of building, compiling and one single-step `fit` epoch (the variables made first when `prepared`)."""
    started = time.perf_counter()
    model = create_model(backbone, weights=None, spectrum=True)
    compile_model(model, 1e-3)
    if prepared:
        x, y = next(iter(data))
        create_training_variables(model, x, y)
    model.fit(data, epochs=1, steps_per_epoch=1, verbose=0, shuffle=False)
    return time.perf_counter() - started


def warm_up(data: tf.data.Dataset) -> None:
    """One single-step fit of a one-layer model, so that neither timed variant pays for loading TensorFlow's kernels."""
    import keras

    inputs = keras.Input((None, None, 3))
    model = keras.Model(inputs, keras.layers.Dense(4, activation="softmax")(keras.layers.GlobalAveragePooling2D()(inputs)))
    compile_model(model, 1e-3)
    model.fit(data, epochs=1, steps_per_epoch=1, verbose=0, shuffle=False)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="densenet121")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (8, args.image_size, args.image_size, 3)).astype("float32")
    data = tf.data.Dataset.from_tensor_slices((images, rng.integers(0, 4, 8))).batch(8).repeat()
    warm_up(data)
    times = {False: [], True: []}
    for round_ in range(args.rounds):
        for prepared in ((False, True) if round_ % 2 == 0 else (True, False)):
            times[prepared].append(seconds_to_first_step(args.backbone, data, prepared=prepared))
        print(f"{args.backbone} at {args.image_size} px: Keras alone {times[False][-1]:.1f} s, "
              f"variables made first {times[True][-1]:.1f} s")
    alone, prepared = min(times[False]), min(times[True])
    result = {"backbone": args.backbone, "image_size": args.image_size, "keras_alone_s": round(alone, 1),
              "prepared_s": round(prepared, 1), "speedup": round(alone / prepared, 2), "rounds": args.rounds}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
