"""Other formats of an export: `blurnet export MODEL_DIR --format F [--out DIR]`.

A blurnet export (`blurnet.export`) is a TensorFlow SavedModel whose `serve`
averages views and tiles large inputs. The formats written here hold the plain
network instead (one view, one tile, the same preprocessing inside: float32 RGB
0..255 in, softmax `(batch, 4)` out, named `probabilities`; with the parameter
head a second output `parameters`, `(batch, 5)`, the head's raw answer that
`blurnet.runtimes` averages over views and decodes as for the SavedModel), each
in its own folder with a copy of the export's `blurnet.json` beside the model
file, so a reader knows the classes, the tile size and the views:

| format | file | shape of the input | for |
| --- | --- | --- | --- |
| `keras` | `model.keras` | any batch, any size >= 32 px | Keras 3 on any backend (`python -m blurnet.train_keras --init-from DIR`) |
| `onnx` | `blurnet.onnx` | any batch, any size >= 32 px | ONNX Runtime (servers, browsers, C#, Java, ...), `blurnet predict --model` without TensorFlow |
| `litert` | `blurnet.tflite` | any batch, any size >= 32 px (1 x 1 until resized) | LiteRT on phones and small devices (Android, iOS, Flutter, React Native) |

LiteRT plans its memory for the shape it is given: a caller resizes the
interpreter's input to its batch and tiles (`resize_tensor_input`, then
`allocate_tensors`), best tiles of the training size (`image_size` in
`blurnet.json`). The views and the tiling are the caller's in both:
`blurnet.runtimes` runs them for `blurnet predict`. `onnx` and `litert` need
the `export` extra (`pip install "blurnet[export]"`: tf2onnx, onnx,
onnxruntime, ai-edge-litert); each written file is checked against the Keras
model on `PARITY_TILES` random tiles before it is kept.

The folder is written atomically: an interrupted export leaves no half-written
folder, and an older one at the same place stays until the new one is complete.
`--out` must be missing, empty, or an earlier export in the same format (a folder
holding that format's file): a SavedModel export or a folder of anything else is
never replaced.
"""
from __future__ import annotations

import logging
import os
import shutil
import warnings
from pathlib import Path

import numpy as np

from blurnet.atomic import atomic_directory, check_apart, check_replaceable
from blurnet.runtimes import RUNTIME_FILES, load_runtime, missing_extra_error, missing_packages

FORMAT_FILES = {"keras": "model.keras", **RUNTIME_FILES}
EXTRA_MODULES = {"onnx": ("tf2onnx", "onnx", "onnxruntime"), "litert": ("ai_edge_litert.interpreter",)}
ONNX_OPSET = 15
ONNX_DIMENSIONS = ("batch", "height", "width")
PARITY_TILES = 8
PARITY_TOLERANCE = 1e-4

log = logging.getLogger(__name__)


def default_out(model_dir: str | os.PathLike, fmt: str) -> Path:
    """Where `blurnet export` writes by default: `<MODEL_DIR>-<format>` beside the export."""
    model_dir = Path(model_dir)
    if model_dir.name in ("", ".."):  # "." or "..": the folder's own name
        model_dir = Path(os.path.abspath(model_dir))
    return model_dir.with_name(f"{model_dir.name}-{fmt}")


def check_extra(fmt: str) -> None:
    """`MissingExtraError` with the pip command when a package that format `fmt` needs is not installed."""
    missing = missing_packages(EXTRA_MODULES.get(fmt, ()))
    if missing:
        raise missing_extra_error(f"--format {fmt}", missing)


def _write_keras(model, path: Path, metadata: dict) -> None:
    model.save(path)


def _name_onnx_dimensions(path: Path) -> None:
    """Call the input's dynamic dimensions batch, height, width and the outputs `probabilities` (batch, 4) and,
    with the parameter head, `parameters` (batch, 5), told apart by their widths."""
    import onnx

    from blurnet.parameter_head import PARAMETERS, PROBABILITIES
    from data_pipeline.classes import NUM_CLASSES
    from data_pipeline.parameters import PARAMETER_TARGETS

    graph_file = onnx.load(str(path))
    graph = graph_file.graph
    for dim, name in zip(graph.input[0].type.tensor_type.shape.dim, ONNX_DIMENSIONS):
        dim.dim_param = name
    names, by_width = {}, {NUM_CLASSES: PROBABILITIES, len(PARAMETER_TARGETS): PARAMETERS}
    for output in graph.output:
        width = output.type.tensor_type.shape.dim[-1].dim_value
        if width not in by_width or by_width[width] in names.values():
            raise ValueError(f"unexpected ONNX output {output.name!r} of width {width}; expected one output of width "
                             f"{NUM_CLASSES} (probabilities) and at most one of width {len(PARAMETER_TARGETS)} (parameters).")
        names[output.name] = by_width[width]
        output.name = names[output.name]
        output.type.tensor_type.shape.dim[0].dim_param = "batch"
    ordered = sorted(graph.output, key=lambda o: o.name != PROBABILITIES)  # probabilities first, as without the head
    ordered = [type(o).FromString(o.SerializeToString()) for o in ordered]
    del graph.output[:]
    graph.output.extend(ordered)
    for node in graph.node:
        node.output[:] = [names.get(name, name) for name in node.output]
        node.input[:] = [names.get(name, name) for name in node.input]
    onnx.checker.check_model(graph_file)
    onnx.save(graph_file, str(path))


def _write_onnx(model, path: Path, metadata: dict) -> None:
    import tensorflow as tf

    signature = [tf.TensorSpec((None, None, None, 3), tf.float32, name="image")]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # Keras' numpy-2 patch of tf2onnx tests for np.object
        model.export(str(path), format="onnx", input_signature=signature, opset_version=ONNX_OPSET, verbose=False)
    _name_onnx_dimensions(path)


def _write_litert(model, path: Path, metadata: dict) -> None:
    import tensorflow as tf

    # Height and width stay dynamic, as in ONNX: the graph's pads and crops are then computed from the tiles it
    # gets, so the smaller tiles of a photograph's pyramid levels are answered too.
    signature = [tf.TensorSpec((None, None, None, 3), tf.float32, name="image")]
    root = logging.getLogger()
    handlers = list(root.handlers)
    try:  # builtin operators only: the ai-edge-litert interpreter on a phone has no TensorFlow (Flex) kernels
        model.export(str(path), format="litert", input_signature=signature, verbose=False,
                     target_spec={"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS]})
    finally:  # the converter gives the root logger a handler of its own: every later message would show twice
        for handler in [h for h in root.handlers if h not in handlers]:
            root.removeHandler(handler)


WRITERS = {"keras": _write_keras, "onnx": _write_onnx, "litert": _write_litert}


def parity_error(model, runtime, side: int, count: int = PARITY_TILES, seed: int = 0) -> float:
    """Largest absolute difference between the outputs of the Keras `model` and of `runtime`'s one view
    (probabilities, and the parameter head's raw output where the model has it) on `count` random smooth tiles
    of `side` px."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, (count, side // 8 + 1, side // 8 + 1, 3))
    tiles = np.clip(np.repeat(np.repeat(coarse, 8, axis=1), 8, axis=2)[:, :side, :side] + rng.normal(0, 8, (count, side, side, 3)), 0, 255)
    tiles = tiles.astype(np.float32)
    from blurnet.parameter_head import PARAMETERS, class_probabilities, has_parameter_head

    expected = model(tiles, training=False)
    probabilities, raw = runtime.answer_tiles(tiles, views=1, batch=count)
    error = float(np.abs(probabilities - np.asarray(class_probabilities(expected))).max())
    if has_parameter_head(model):
        if raw is None:
            return float("inf")  # the file lost the head
        error = max(error, float(np.abs(raw - np.asarray(expected[PARAMETERS])).max()))
    return error


def export_format(model_dir: str | os.PathLike, fmt: str, out: str | os.PathLike | None = None) -> Path:
    """Write the export in `model_dir` as `fmt` (one of `FORMAT_FILES`) into the folder `out`; returns the model file.

    `onnx` and `litert` files are checked against the Keras model first (`parity_error`,
    at most `PARITY_TOLERANCE`); `MissingExtraError` when the `export` extra is not installed.
    """
    from blurnet.export import METADATA_FILE, model_from_export, read_metadata

    if fmt not in WRITERS:
        raise ValueError(f"format must be one of {sorted(WRITERS)}, got {fmt!r}.")
    out = Path(out) if out is not None else default_out(model_dir, fmt)
    check_apart(out, model_dir, "--out and the export it converts")  # replacing --out must never touch the model
    check_replaceable(out, FORMAT_FILES[fmt])  # an earlier file of this format only: never a SavedModel export
    check_extra(fmt)
    metadata = read_metadata(model_dir, weights_only=True)
    model = model_from_export(model_dir)
    with atomic_directory(out, METADATA_FILE) as tmp:
        shutil.copy(Path(model_dir) / METADATA_FILE, tmp / METADATA_FILE)
        WRITERS[fmt](model, tmp / FORMAT_FILES[fmt], metadata)
        if fmt in RUNTIME_FILES:
            runtime = load_runtime(tmp / FORMAT_FILES[fmt])
            error = parity_error(model, runtime, runtime.image_size)
            if not error <= PARITY_TOLERANCE:
                raise ValueError(f"the {fmt} file answers up to {error:.2e} away from the Keras model "
                                 f"(at most {PARITY_TOLERANCE:g} allowed); nothing was written.")
            log.info("%s: %d random tiles answered within %.1e of the Keras model", fmt, PARITY_TILES, error)
    return out / FORMAT_FILES[fmt]
