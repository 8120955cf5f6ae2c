"""Data-parallel scaling: training images/s on one and on two logical CPU devices, same global batch.

    python benchmarks/scale.py

Each configuration runs in a fresh process (logical devices must be configured
before TensorFlow starts): DenseNet121 from scratch, MirroredStrategy, global
batch 32 at 64 px, in-memory tensors, best epoch of three. On a 2-core CPU the
two "devices" share the same cores, so this measures the overhead of the
strategy machinery, not a speed-up; on a multi-GPU machine run `blurnet fit
--strategy mirrored` instead. Last line: JSON with `images_per_s_1_device`,
`images_per_s_2_devices`.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

IMAGE_SIZE, BATCH, STEPS = 64, 32, 8


def measure(devices: int) -> float:
    """Images/s with `devices` logical CPU devices (run in this process)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import time

    import keras
    import numpy as np
    import tensorflow as tf

    from blurnet.distribute import configure_cpu_devices, create_strategy
    from blurnet.model import create_model, synchronize_batchnorm

    configure_cpu_devices(devices)
    strategy = create_strategy("mirrored")
    with strategy.scope():
        model = create_model(weights=None)
        if devices > 1:
            synchronize_batchnorm(model)
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (BATCH * STEPS, IMAGE_SIZE, IMAGE_SIZE, 3)).astype("float32")
    y = (np.arange(BATCH * STEPS) % 4).astype("int32")
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH).repeat()
    times = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.start)

    model.fit(data, steps_per_epoch=STEPS, epochs=4, verbose=0, callbacks=[Timer()])
    return STEPS * BATCH / min(times[1:])  # the first epoch builds the graph


def main():
    rates = {}
    for devices in (1, 2):
        out = subprocess.run([sys.executable, __file__, "--devices", str(devices)], capture_output=True, text=True, check=True)
        rates[devices] = float(out.stdout.strip().splitlines()[-1])
        print(f"MirroredStrategy over {devices} logical CPU device(s), global batch {BATCH}, {IMAGE_SIZE} px: {rates[devices]:7.1f} images/s")
    print(f"2 devices / 1 device: {rates[2] / rates[1]:.3f} (same 2 cores: the strategy's overhead, not a speed-up)")
    print(json.dumps({"images_per_s_1_device": round(rates[1], 2), "images_per_s_2_devices": round(rates[2], 2)}))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--devices":
        print(measure(int(sys.argv[2])))
    else:
        main()
