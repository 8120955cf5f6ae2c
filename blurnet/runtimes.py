"""Run an ONNX or LiteRT export without TensorFlow: `OnnxModel`, `LiteRTModel`, `load_runtime`.

`blurnet export MODEL_DIR --format onnx|litert` (`blurnet.formats`) writes the
plain network: one view, one tile, the preprocessing inside, float32 RGB 0..255
in, softmax `(batch, 4)` out. What the SavedModel's `serve` does around that
network happens here and in `blurnet.classify` instead: the flipped and rotated
views are averaged in numpy (`blurnet.views.average_over_views`, as many as
`test_time_views` in the `blurnet.json` beside the file, 8 if it has none), and
photographs are cut into tiles of `image_size` px by `blurnet.classify`, as for
any model. So the classes here answer tiles of at most `image_size` px a side.
A file of a model with the parameter head has a second output, `parameters`
(`(batch, 5)`, `data_pipeline.parameters.PARAMETER_TARGETS`); the runtime then
`has_parameters` and `blurnet predict` records carry `blur` as with the SavedModel.

`blurnet.tflite` takes any batch and tiles of any size (its height and width are
dynamic); `LiteRTModel` resizes the interpreter's input to the tiles it is given.

This module imports neither TensorFlow nor Keras: with `onnxruntime` (or
`ai-edge-litert`), numpy and OpenCV, `blurnet predict --model blurnet.onnx` runs
in an environment without TensorFlow. A missing runtime package raises
`MissingExtraError`, whose message gives the pip command.
"""
from __future__ import annotations

import importlib
import importlib.util
import json
import os
from pathlib import Path

import numpy as np

from blurnet import quiet
from blurnet.errors import NotAnExportError
from blurnet.loaded_model import METADATA_FILE, LoadedModel
from blurnet.views import average_over_views
from data_pipeline.classes import MIN_IMAGE_SIDE, NUM_CLASSES
from data_pipeline.parameters import PARAMETER_TARGETS

RUNTIME_FILES = {"onnx": "blurnet.onnx", "litert": "blurnet.tflite"}  # the onnx file wins in a folder holding both
EXTRA_INSTALL = 'pip install "blurnet[export]"'
PIP_NAMES = {"ai_edge_litert": "ai-edge-litert"}
CALL_BATCH = 16  # images per runtime call: on 2 CPU cores both runtimes answer 16 a call 1.4 times as fast as 256


class MissingExtraError(ImportError):
    """A package of the `export` extra is not installed; the message gives the pip command."""


def missing_packages(modules) -> list[str]:
    """The pip names of those `modules` (import names) that cannot be imported; imports none of them."""
    missing = []
    for module in modules:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # a parent package missing, or a module blocked in sys.modules
            found = False
        if not found:
            top = module.split(".")[0]
            missing.append(PIP_NAMES.get(top, top))
    return missing


def missing_extra_error(purpose: str, packages) -> MissingExtraError:
    """The `MissingExtraError` for `purpose` (e.g. "--format onnx") missing the pip `packages`."""
    names = ", ".join(packages)
    return MissingExtraError(f"{purpose} needs {names}, not installed here. Install the export extra: {EXTRA_INSTALL}")


def require(module: str, purpose: str):
    """Import and return `module`; `MissingExtraError` with the pip command if it is not installed."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise missing_extra_error(purpose, missing_packages([module]) or [module]) from None


def runtime_file(path: str | os.PathLike) -> Path | None:
    """The ONNX or LiteRT file that `path` names (the file itself, or the `blurnet.onnx` / `blurnet.tflite`
    of a folder without `saved_model.pb`); None for anything else, such as a SavedModel export."""
    path = Path(path)
    if path.suffix in (".onnx", ".tflite"):
        return path
    if path.is_dir() and not (path / "saved_model.pb").exists():
        for name in RUNTIME_FILES.values():
            if (path / name).is_file():
                return path / name
    return None


def load_runtime(path: str | os.PathLike):
    """An `OnnxModel` or `LiteRTModel` for `path` (see `runtime_file`); `NotAnExportError` if it names neither."""
    found = runtime_file(path)
    if found is None:
        raise NotAnExportError(f"{str(path)!r} is neither a .onnx nor a .tflite file, nor a folder holding "
                               f"{' or '.join(RUNTIME_FILES.values())}.")
    return OnnxModel(found) if found.suffix == ".onnx" else LiteRTModel(found)


class _RuntimeModel(LoadedModel):
    """What `OnnxModel` and `LiteRTModel` share: `blurnet.json`, the views, the interface of `ExportedModel`."""

    runtime = ""  # what runs the file, for the device line of `blurnet predict`
    default_views = 8

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.folder = self.path.parent
        if not self.path.is_file():
            raise NotAnExportError(f"Model file {str(self.path)!r} does not exist.")
        meta = self.folder / METADATA_FILE
        try:
            self.metadata = json.loads(meta.read_text())
        except FileNotFoundError:
            raise NotAnExportError(f"{str(self.path)!r} has no {METADATA_FILE} beside it: export it with "
                                   f"'blurnet export MODEL_DIR --format {self.path.suffix.lstrip('.')}'.") from None
        except (OSError, ValueError) as error:
            raise NotAnExportError(f"{meta}: unreadable metadata ({error}).") from None

    def _predict(self, tiles: np.ndarray) -> list[np.ndarray]:
        """The file's outputs for one batch of tiles, in any order."""
        raise NotImplementedError

    def _check_layout(self, inputs: list, outputs: list) -> bool:
        """Whether the file has the parameter head; `NotAnExportError` naming the file unless it takes one
        `(batch, height, width, 3)` input and answers `(batch, 4)` probabilities, with or without the head's
        `(batch, 5)`: checked once at loading, so that another network is not blamed on every photograph."""
        inputs, outputs = [list(shape) for shape in inputs], [list(shape) for shape in outputs]
        widths = sorted((shape[-1] if shape else None for shape in outputs), key=str)
        if (len(inputs) != 1 or len(inputs[0]) != 4 or inputs[0][-1] != 3
                or widths not in ([NUM_CLASSES], [NUM_CLASSES, len(PARAMETER_TARGETS)])):
            raise NotAnExportError(
                f"{str(self.path)!r} is not a blurnet network: it takes {inputs} and answers {outputs}, where blurnet "
                f"needs one (batch, height, width, 3) input and (batch, {NUM_CLASSES}) probabilities (with or "
                f"without (batch, {len(PARAMETER_TARGETS)}) parameters); write one with 'blurnet export'.")
        return len(widths) == 2

    def _outputs(self, outputs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
        """Probabilities `(n, 4)` and, where the file has the head, its raw parameters `(n, 5)`, told by their widths."""
        by_width = {np.shape(o)[-1]: np.asarray(o, np.float32) for o in outputs}
        return by_width[NUM_CLASSES], by_width.get(len(PARAMETER_TARGETS))

    def _checked(self, tiles) -> np.ndarray:
        tiles = np.asarray(tiles, np.float32)
        if tiles.ndim != 4 or tiles.shape[-1] != 3:
            raise ValueError(f"tiles must be (n, height, width, 3), got shape {tiles.shape!r}.")
        if not MIN_IMAGE_SIDE <= min(tiles.shape[1:3]) <= max(tiles.shape[1:3]) <= self.image_size:
            raise ValueError(f"tiles must be {MIN_IMAGE_SIDE} to {self.image_size} px a side (the one-tile network; "
                             f"blurnet.classify cuts photographs), got shape {tiles.shape!r}.")
        return tiles

    def _one_pass(self, tiles: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """One view: probabilities `(n, 4)` and, where `has_parameters`, the head's raw output `(n, 5)`."""
        if len(tiles) == 0:
            return np.zeros((0, NUM_CLASSES), np.float32), (np.zeros((0, len(PARAMETER_TARGETS)), np.float32)
                                                            if self.has_parameters else None)
        parts = [self._outputs(self._predict(np.ascontiguousarray(tiles[i : i + CALL_BATCH])))
                 for i in range(0, len(tiles), CALL_BATCH)]
        probabilities = np.concatenate([p for p, _ in parts], axis=0)
        return probabilities, (np.concatenate([r for _, r in parts], axis=0) if self.has_parameters else None)

    def _one_view(self, tiles: np.ndarray) -> np.ndarray:
        return self._one_pass(tiles)[0]

    def __call__(self, tiles) -> np.ndarray:
        """Probabilities `(n, 4)` for float32 tiles `(n, h, w, 3)` in 0..255, h and w from 32 px to `image_size`,
        averaged over `views` views."""
        return average_over_views(self._one_view, self._checked(tiles), self.views)


def _onnx_providers(ort) -> list[str]:
    """CUDA when this onnxruntime has it (the onnxruntime-gpu package), then the CPU."""
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in ort.get_available_providers()]


class OnnxModel(_RuntimeModel):
    """A `blurnet.onnx` under ONNX Runtime: the interface of `blurnet.export.ExportedModel`, without TensorFlow."""

    def __init__(self, path: str | os.PathLike):
        super().__init__(path)
        ort = require("onnxruntime", "Running an ONNX model")
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only
        try:
            self._session = ort.InferenceSession(str(self.path), options, providers=_onnx_providers(ort))
        except Exception as error:  # onnxruntime raises its own exception types for a broken file
            raise NotAnExportError(f"{str(self.path)!r}: ONNX Runtime cannot load it ({error}).") from None
        self.has_parameters = self._check_layout([i.shape for i in self._session.get_inputs()],
                                                 [o.shape for o in self._session.get_outputs()])
        self._input = self._session.get_inputs()[0].name
        self.runtime = f"ONNX Runtime {ort.__version__} ({self._session.get_providers()[0]})"

    def _predict(self, tiles: np.ndarray) -> list[np.ndarray]:
        return self._session.run(None, {self._input: tiles})


class LiteRTModel(_RuntimeModel):
    """A `blurnet.tflite` under the LiteRT interpreter (`ai-edge-litert`): the interface of `ExportedModel`."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None):
        super().__init__(path)
        litert = require("ai_edge_litert.interpreter", "Running a LiteRT model")
        try:
            self._interpreter = litert.Interpreter(model_path=str(self.path), num_threads=threads or quiet.cpu_cores())
        except (ValueError, RuntimeError) as error:
            raise NotAnExportError(f"{str(self.path)!r}: LiteRT cannot load it ({error}).") from None
        outputs = self._interpreter.get_output_details()
        self.has_parameters = self._check_layout([i["shape_signature"] for i in self._interpreter.get_input_details()],
                                                 [o["shape_signature"] for o in outputs])
        self._input = self._interpreter.get_input_details()[0]["index"]
        self._outputs_at = [o["index"] for o in outputs]
        self._shape = None
        self.runtime = f"LiteRT {getattr(importlib.import_module('ai_edge_litert'), '__version__', '')}".strip()

    def _predict(self, tiles: np.ndarray) -> list[np.ndarray]:
        if tiles.shape != self._shape:  # reallocating costs time: only when the batch or tile shape changes
            self._interpreter.resize_tensor_input(self._input, list(tiles.shape), strict=False)
            with quiet.stderr_silenced():  # the first allocation announces the XNNPACK delegate on stderr
                self._interpreter.allocate_tensors()
            self._shape = tiles.shape
        self._interpreter.set_tensor(self._input, tiles)
        self._interpreter.invoke()
        return [self._interpreter.get_tensor(index).copy() for index in self._outputs_at]
