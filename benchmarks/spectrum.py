"""Tiles/s of the network with its Welch spectra's windows cut by reshaping (as shipped) and by
`keras.ops.image.extract_patches` (an identity-kernel convolution), side by side.

    python benchmarks/spectrum.py [--tiles 128] [--batch 16] [--rounds 5]

Both networks are DenseNet121 with the classifier's spectral branch and the parameter head
(`create_model(weights=None, spectrum=True, parameter_head=True)`, the same weights in both),
at 96 px (the bundled model's tile), one view, `--batch` tiles a call (`blurnet predict`'s 16),
each in a `tf.function`. Tiles are random crops of the bundled photographs. The two take turns
for `--rounds` rounds; each rate is the best round (the machines are shared). The largest
difference between their outputs is printed too (the windows are the same, so only float
rounding). The last line is JSON.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's blurnet, without installing it
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from keras import ops  # noqa: E402

from blurnet import spectrum  # noqa: E402
from blurnet.model import create_model  # noqa: E402
from data_pipeline.sources import load_photographs  # noqa: E402

SIZE = 96


def windows_by_patches(gray, window: int):
    """The same windows as `spectrum._half_overlapping_windows`, by `keras.ops.image.extract_patches`."""
    patches = ops.image.extract_patches(gray[..., None], window, strides=window // 2, padding="valid",
                                        data_format="channels_last")
    return ops.reshape(patches, (ops.shape(patches)[0], -1, window, window))


@contextlib.contextmanager
def patch_windows():
    """Build (and trace) networks whose spectra cut their windows with `windows_by_patches`."""
    shipped = spectrum._half_overlapping_windows
    spectrum._half_overlapping_windows = windows_by_patches
    try:
        yield
    finally:
        spectrum._half_overlapping_windows = shipped


def random_tiles(count: int, seed: int = 0) -> np.ndarray:
    """`count` random 96 px crops of the bundled photographs, float32 0..255."""
    rng = np.random.default_rng(seed)
    photos = load_photographs(None, min_size=SIZE)
    tiles = []
    for _ in range(count):
        image = photos[int(rng.integers(len(photos)))].image
        y, x = (int(rng.integers(0, side - SIZE + 1)) for side in image.shape[:2])
        tiles.append(image[y : y + SIZE, x : x + SIZE])
    return np.stack(tiles).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tiles", type=int, default=128)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    tiles = random_tiles(args.tiles)
    batches = [tf.constant(tiles[i : i + args.batch]) for i in range(0, len(tiles), args.batch)]

    shipped = create_model(weights=None, spectrum=True, parameter_head=True)
    with patch_windows():
        patches = create_model(weights=None, spectrum=True, parameter_head=True)
        patches.set_weights(shipped.get_weights())
        run_patches = tf.function(lambda x: patches(x, training=False))
        outputs_patches = [run_patches(b) for b in batches]  # traced here, with the patched windows
    run_shipped = tf.function(lambda x: shipped(x, training=False))
    outputs_shipped = [run_shipped(b) for b in batches]
    difference = max(float(np.abs(np.asarray(a[key]) - np.asarray(b[key])).max())
                     for a, b in zip(outputs_shipped, outputs_patches) for key in ("probabilities", "parameters"))

    best = {"reshape": 0.0, "extract_patches": 0.0}
    for _ in range(args.rounds):
        for name, run in (("reshape", run_shipped), ("extract_patches", run_patches)):
            start = time.perf_counter()
            for b in batches:
                run(b)["parameters"].numpy()
            best[name] = max(best[name], len(tiles) / (time.perf_counter() - start))
    ratio = best["reshape"] / best["extract_patches"]
    print(f"{len(tiles)} tiles of {SIZE} px, {args.batch} a call, best of {args.rounds} rounds: windows by reshaping "
          f"{best['reshape']:.1f} tiles/s, by extract_patches {best['extract_patches']:.1f} tiles/s ({ratio:.2f}x); "
          f"largest output difference {difference:.2e}")
    print(json.dumps({"tiles_per_s_reshape": round(best["reshape"], 2),
                      "tiles_per_s_extract_patches": round(best["extract_patches"], 2),
                      "speedup": round(ratio, 3), "max_abs_difference": difference}))


if __name__ == "__main__":
    main()
