"""Images/s of one export as a SavedModel, under ONNX Runtime and under LiteRT, side by side, and file sizes.

    python benchmarks/formats.py [MODEL_DIR] [--tiles 256] [--batch 16] [--rounds 5]

Like is compared with like: every format answers the same tiles of exactly the
training size (`image_size`, 96 px for the bundled model), cut from the bundled
photographs, one view each, `--batch` tiles a call (16: `blurnet predict`'s batch).

- SavedModel: the export re-made with one view (`export_model(..., views=1,
  tile=image_size)`) and loaded with `tf.saved_model.load`; its `serve` answers
  a tile of the training size whole. `tf_function_images_per_s` is the plain Keras
  network in a `tf.function` (what `model_from_export` gives), for reference.
- ONNX Runtime and LiteRT: `blurnet export --format onnx|litert` into a temporary
  folder, run by `blurnet.runtimes` (one view: `predict_tiles(views=1)`), with
  the default threads of ONNX Runtime and one LiteRT thread per core.

The formats take turns for `--rounds` rounds; each rate is the best round
(the machines are shared). The probabilities are compared with the SavedModel's
(max abs difference) on the textured tiles (mean gradient >= 4, the tiles
`blurnet predict` counts) and, apart, on the flat ones: a tile of one colour has
no spectrum, and the spectral branch turns the last bit of its float rounding
into a few hundredths of probability that differ between runtimes (such tiles
do not count in a photograph's answer). Sizes in bytes: the SavedModel as
shipped (`saved_model.pb` + `variables/`), `blurnet.onnx`, `blurnet.tflite`.
Needs the export extra. The last line is JSON.
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

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from blurnet.export import default_model_dir, export_model, model_from_export, read_metadata  # noqa: E402
from blurnet.parameter_head import class_probabilities  # noqa: E402
from blurnet.formats import export_format  # noqa: E402
from blurnet.runtimes import load_runtime  # noqa: E402
from data_pipeline.crops import DEFAULT_MIN_TEXTURE, gradient_magnitude  # noqa: E402
from data_pipeline.sources import bundled_photo_paths, read_image  # noqa: E402


def photo_tiles(side: int, count: int) -> np.ndarray:
    """`count` tiles of `side` px from a grid over the bundled photographs, taken in turn; float32 0..255."""
    grids = []
    for _, path in bundled_photo_paths():
        image = read_image(path)
        grids.append([image[t : t + side, l : l + side] for t in range(0, image.shape[0] - side + 1, side)
                      for l in range(0, image.shape[1] - side + 1, side)])
    tiles = [grid[n] for n in range(max(map(len, grids))) for grid in grids if n < len(grid)][:count]
    if len(tiles) < count:
        raise ValueError(f"the bundled photographs hold {len(tiles)} tiles of {side} px, asked for {count!r}.")
    return np.stack(tiles).astype(np.float32)


def savedmodel_bytes(folder: Path) -> int:
    """Bytes of the SavedModel itself: saved_model.pb and its variables."""
    return (folder / "saved_model.pb").stat().st_size + sum(p.stat().st_size for p in (folder / "variables").rglob("*") if p.is_file())


def single_view_savedmodel(model_dir: Path, work: Path):
    """The export re-made with one view and tiles of its training size, loaded back: (its `serve`, the Keras network)."""
    import tensorflow as tf

    meta = read_metadata(model_dir)
    model = model_from_export(model_dir)
    keep = {k: v for k, v in meta.items() if k not in ("test_time_views", "tile_size")}
    export_model(model, work / "one-view", keep, views=1, tile=int(meta["image_size"]))
    loaded = tf.saved_model.load(str(work / "one-view"))  # kept referenced: `serve` needs its variables
    network = tf.function(lambda x: class_probabilities(model(x, training=False)), reduce_retracing=True)
    return (lambda x: loaded.serve(tf.constant(x)).numpy()), (lambda x: network(tf.constant(x)).numpy())


def run_batches(predict, tiles: np.ndarray, batch: int) -> tuple[np.ndarray, float]:
    """(probabilities of every tile, seconds) for `predict` over `tiles`, `batch` at a time."""
    start = time.perf_counter()
    out = np.concatenate([predict(tiles[i : i + batch]) for i in range(0, len(tiles), batch)])
    return out, time.perf_counter() - start


def main(argv=None) -> dict:
    """Run the comparison (arguments as on the command line); prints the table and returns the JSON line's dict."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", nargs="?", default=None, help="SavedModel export [default: the bundled model]")
    parser.add_argument("--tiles", type=int, default=256, help="tiles of the training size to answer")
    parser.add_argument("--batch", type=int, default=16, help="tiles per call, the same in every format")
    parser.add_argument("--rounds", type=int, default=5, help="turns each format takes; the best counts")
    args = parser.parse_args(argv)
    model_dir = Path(args.model_dir) if args.model_dir else default_model_dir()
    side = int(read_metadata(model_dir)["image_size"])
    tiles = photo_tiles(side, args.tiles)
    with tempfile.TemporaryDirectory(prefix="blurnet-formats-") as tmp:
        tmp = Path(tmp)
        serve, network = single_view_savedmodel(model_dir, tmp)
        files = {fmt: export_format(model_dir, fmt, tmp / fmt) for fmt in ("onnx", "litert")}
        runtimes = {fmt: load_runtime(path) for fmt, path in files.items()}
        contenders = {"savedmodel": serve, "tf_function": network,
                      **{fmt: (lambda x, r=r: r.predict_tiles(x, views=1, batch=len(x))) for fmt, r in runtimes.items()}}
        answers, best = {}, {name: float("inf") for name in contenders}
        for name, predict in contenders.items():
            answers[name] = run_batches(predict, tiles[: args.batch], args.batch)[0]  # warm-up: tracing, allocation
        for _ in range(args.rounds):
            for name, predict in contenders.items():
                answers[name], seconds = run_batches(predict, tiles, args.batch)
                best[name] = min(best[name], seconds)
        sizes = {"savedmodel_bytes": savedmodel_bytes(model_dir), **{f"{fmt}_bytes": p.stat().st_size for fmt, p in files.items()}}
    rates = {name: len(tiles) / seconds for name, seconds in best.items()}
    textured = np.array([gradient_magnitude(t.astype(np.uint8)).mean() >= DEFAULT_MIN_TEXTURE for t in tiles])
    gaps = {name: np.abs(answers[name] - answers["savedmodel"]).max(axis=1) for name in ("tf_function", "onnx", "litert")}
    diffs = {name: float(gap[textured].max()) for name, gap in gaps.items()}
    flat = {name: float(gap[~textured].max(initial=0.0)) for name, gap in gaps.items()}
    labels = {name: float((answers[name].argmax(1) == answers["savedmodel"].argmax(1)).mean()) for name in ("onnx", "litert")}
    for name in contenders:
        extra = f", max |p - SavedModel| {diffs[name]:.1e} (flat tiles {flat[name]:.1e})" if name in diffs else ""
        print(f"{name:12s} {rates[name]:7.1f} images/s ({rates[name] / rates['savedmodel']:.2f} x SavedModel){extra}")
    for key, value in sizes.items():
        print(f"{key:18s} {value / 1e6:6.1f} MB")
    result = {
        "savedmodel_images_per_s": round(rates["savedmodel"], 1),
        "onnx_images_per_s": round(rates["onnx"], 1),
        "litert_images_per_s": round(rates["litert"], 1),
        "tf_function_images_per_s": round(rates["tf_function"], 1),
        "onnx_vs_savedmodel": round(rates["onnx"] / rates["savedmodel"], 3),
        "litert_vs_savedmodel": round(rates["litert"] / rates["savedmodel"], 3),
        **sizes,
        "onnx_max_abs_diff": float(f"{diffs['onnx']:.2e}"),
        "litert_max_abs_diff": float(f"{diffs['litert']:.2e}"),
        "onnx_max_abs_diff_flat": float(f"{flat['onnx']:.2e}"),
        "litert_max_abs_diff_flat": float(f"{flat['litert']:.2e}"),
        "flat_tiles": int((~textured).sum()),
        "onnx_same_label": labels["onnx"],
        "litert_same_label": labels["litert"],
        "tiles": len(tiles), "tile_size": side, "batch": args.batch,
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
