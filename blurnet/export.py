"""Export a trained model as a TensorFlow SavedModel plus `blurnet.json`.

The folder holds one copy of the weights: the SavedModel's variables. Keras
code gets the trainable model back with `model_from_export` (the network built
from `blurnet.json`, its weights read from the SavedModel's checkpoint), which
is what `fit --init-from` and `blurnet export --format keras` use.

The export folder is written atomically: everything is
built in a hidden temporary folder beside the target, then renamed into place.
An interrupted export never leaves a half-written model at the target, and an
older model there stays intact until the new one is complete.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from blurnet.atomic import atomic_directory
from blurnet.loaded_model import METADATA_FILE, LoadedModel
from blurnet.errors import NotAnExportError  # noqa: F401 - defined without TensorFlow, raised and re-exported here
from blurnet.parameter_head import PARAMETERS, PROBABILITIES, class_probabilities, decode_parameters, has_parameter_head
from blurnet.tiling import answer_by_tiles, texture_weighted_mean, texture_weighted_median
from blurnet.views import ANSWER_VIEW_SIGNS, average_over_views, check_views
from data_pipeline.classes import MIN_IMAGE_SIDE, NUM_CLASSES
from data_pipeline.parameters import PARAMETER_TARGETS

DEFAULT_MODEL = "saved_models/blurnet-densenet121"
SAVED_MODEL_FILE = "saved_model.pb"  # what every SavedModel export holds
#: What marks a folder as an earlier blurnet export, which a new export may replace: another program's SavedModel
#: (no blurnet.json) is never replaced.
EXPORT_MARKERS = (SAVED_MODEL_FILE, METADATA_FILE)
#: What an export writes (or may: assets, the training log of `fit`): the rest of a replaced export (a model card,
#: notes) is kept.
EXPORT_OWN_FILES = (SAVED_MODEL_FILE, "saved_model.pbtxt", "fingerprint.pb", "variables", "assets", METADATA_FILE,
                    "training_log.csv")
logger = logging.getLogger(__name__)


def git_commit() -> str | None:
    """The current git commit of the source tree, or None."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def versions() -> dict:
    """Versions of tensorflow and keras in use."""
    return {"tensorflow": tf.__version__, "keras": keras.__version__}


def inference_copy(model: keras.Model) -> keras.Model:
    """The same architecture and weights, never compiled: no optimizer state to export."""
    plain = model.__class__.from_config(model.get_config())
    plain.set_weights(model.get_weights())
    return plain


_IMAGE_SPEC = tf.TensorSpec((None, None, None, 3), tf.float32, name="image")


class _Serving(tf.Module):
    """What the SavedModel holds: the model and its `serve` endpoint (averaging `views` views; inputs
    larger than `tile` px answered tile by tile, `blurnet.tiling`; `tile=None`: always whole), and for a
    model with the parameter head its `estimate` endpoint."""

    def __init__(self, model: keras.Model, views: int = 1, tile: int | None = None):
        super().__init__()
        self.model = model
        self.views = check_views(views)
        self.tile = tile
        # One traced function for the network, called by every view of both endpoints: the SavedModel holds
        # the network's graph once instead of once per view and endpoint (11 MB of graph for 8 views and two
        # endpoints of the DenseNet121 model).
        self.network = tf.function(lambda x: self.model(x, training=False), input_signature=[_IMAGE_SPEC])
        if has_parameter_head(model):
            self.estimate = tf.function(self._estimate, input_signature=[_IMAGE_SPEC])

    @tf.function(input_signature=[_IMAGE_SPEC])
    def serve(self, image):
        """Softmax probabilities (batch, 4) for float32 RGB images (batch, h, w, 3) in 0..255."""
        def predict(x):
            return average_over_views(lambda v: class_probabilities(self.network(v)), x, self.views)

        return predict(image) if self.tile is None else answer_by_tiles(predict, image, self.tile)

    def _estimate(self, image):
        """`serve`'s probabilities and the blur parameters of each class, `(batch,)` each, from the same network
        passes: both averaged over the views (each view's angle turned back), tile by tile like `serve`, the
        probabilities combined as there, the parameters by the texture-weighted median."""
        def predict(x):
            def one_view(v):
                out = self.network(v)
                return tf.concat([out[PROBABILITIES], out[PARAMETERS]], axis=-1)  # both float32 (their layers' dtype)

            return average_over_views(one_view, x, self.views, ANSWER_VIEW_SIGNS)

        def combine(answers, textures):
            return tf.concat([texture_weighted_mean(answers[..., :NUM_CLASSES], textures),
                              texture_weighted_median(answers[..., NUM_CLASSES:], textures)], axis=-1)

        answers = predict(image) if self.tile is None else answer_by_tiles(
            predict, image, self.tile, NUM_CLASSES + len(PARAMETER_TARGETS), combine=combine)
        return {"probabilities": answers[:, :NUM_CLASSES], **decode_parameters(answers[:, NUM_CLASSES:])}


def _write_export(model: keras.Model, folder: Path, metadata: dict, extra_files=()) -> None:
    # Exported from an uncompiled copy: the optimizer's state would triple the size.
    # tf.saved_model.save of a tf.Module stores each variable once (Keras'
    # ExportArchive, as of Keras 3.15, stores every variable twice).
    model = inference_copy(model)
    serving = _Serving(model, metadata["test_time_views"], metadata["tile_size"])
    tf.saved_model.save(serving, str(folder), signatures={"serving_default": serving.serve})
    for path in extra_files:
        shutil.copy(path, folder / Path(path).name)
    (folder / METADATA_FILE).write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n")


def export_model(model: keras.Model, target: str | os.PathLike, metadata: dict, extra_files=(), views: int = 1,
                 tile: int | None = None) -> Path:
    """Write the SavedModel, `blurnet.json` and `extra_files` to `target`, atomically.

    The SavedModel's `serve` averages the model over `views` flipped and rotated
    views of its input (1, 4 or 8; `blurnet.views`) and, with `tile` (`fit` passes
    the training crop size), answers inputs larger than `tile` px tile by tile
    (`blurnet.tiling`); the plain model is kept as the SavedModel's `model`
    (`model_from_export` rebuilds it). `metadata` goes into
    `blurnet.json`, completed with `test_time_views`, `tile_size`, tensorflow/keras
    versions and the git commit when not given.
    """
    if tile is not None and tile < MIN_IMAGE_SIDE:
        raise ValueError(f"tile must be None or >= {MIN_IMAGE_SIDE} px (the model's smallest input), got {tile!r}.")
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    metadata = {**metadata, "test_time_views": check_views(views), "tile_size": tile, "parameter_head": has_parameter_head(model)}
    metadata.setdefault("versions", versions())
    metadata.setdefault("git_commit", git_commit())
    # replaces an earlier blurnet export, nothing else, keeping what the export does not write (its model card)
    with atomic_directory(target, EXPORT_MARKERS, keep_others_except=EXPORT_OWN_FILES) as tmp:
        _write_export(model, tmp, metadata, extra_files)
    return target


def default_model_dir() -> Path:
    """The bundled model: `saved_models/blurnet-densenet121` in the current folder if present, else beside the package."""
    here = Path(DEFAULT_MODEL)
    if here.exists():
        return here
    return Path(__file__).resolve().parent.parent / DEFAULT_MODEL


def read_metadata(folder: str | os.PathLike, weights_only: bool = False) -> dict:
    """`blurnet.json` of an export; `NotAnExportError` saying what was expected otherwise.

    `weights_only=True` also accepts the weights folder of `blurnet.train_keras`
    (`weights.json` and its `.npz` parts beside its `blurnet.json`), a starting point for `fit --init-from`.
    """
    from blurnet.train_keras import WEIGHTS_MANIFEST

    folder = Path(folder)
    meta = folder / METADATA_FILE
    if not folder.is_dir():
        bundled = Path(folder).as_posix().endswith(DEFAULT_MODEL)
        raise NotAnExportError(f"Model folder {str(folder)!r} does not exist." + (
            " The bundled model comes with blurnet's source tree: install it from a clone with `pip install -e .`, "
            "or give --model FOLDER." if bundled else ""))
    has_weights = (folder / SAVED_MODEL_FILE).is_file() or (weights_only and (folder / WEIGHTS_MANIFEST).is_file())
    if not meta.is_file() or not has_weights:
        raise NotAnExportError(
            f"{str(folder)!r} is not a blurnet export: expected a TensorFlow SavedModel "
            f"(saved_model.pb) with {METADATA_FILE} beside it, as written by 'blurnet fit'"
            + (f", or the {WEIGHTS_MANIFEST} and weights of 'python -m blurnet.train_keras'." if weights_only else ".")
        )
    try:
        return json.loads(meta.read_text())
    except (OSError, ValueError) as error:
        raise NotAnExportError(f"{meta}: unreadable metadata ({error}).") from None


class ExportedModel(LoadedModel):
    """A loaded blurnet export: call it on float32 RGB batches 0..255 to get probabilities."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.metadata = read_metadata(self.folder)
        try:
            self._loaded = tf.saved_model.load(str(self.folder))
        except Exception as error:  # corrupt protobuf, missing variables, ...
            raise NotAnExportError(f"{str(self.folder)!r}: the SavedModel cannot be loaded ({error}).") from None
        self._serve = self._loaded.serve
        self._single_view = None
        self.has_parameters = bool(self.metadata.get("parameter_head", False))

    @property
    def num_parameters(self) -> int:
        """Number of weights stored in the SavedModel (trainable and not)."""
        shapes = tf.train.list_variables(str(self.folder / "variables" / "variables"))
        return int(sum(int(np.prod(shape)) for name, shape in shapes if shape))

    def __call__(self, images) -> "tf.Tensor":
        """Probabilities `(batch, 4)` for float32 images `(batch, h, w, 3)` in 0..255."""
        return self._serve(tf.convert_to_tensor(images, tf.float32))

    def estimate(self, images) -> dict:
        """The SavedModel's `estimate` endpoint on float32 images `(batch, h, w, 3)` in 0..255, as numpy arrays:
        `probabilities` `(batch, 4)` and `sigma`, `length`, `angle` (degrees), `radius`, `(batch,)` each."""
        if not self.has_parameters:
            raise ValueError(f"model {self.name!r} has no parameter head, so no estimate endpoint (fit it with --parameter-head).")
        return {k: v.numpy() for k, v in self._loaded.estimate(tf.convert_to_tensor(images, tf.float32)).items()}

    def load_single_view(self) -> None:
        """Build the plain network `predict_tiles` runs (`model_from_export`; `NotAnExportError` if its weights do not load)."""
        if self._single_view is None:
            model = model_from_export(self.folder)
            if has_parameter_head(model):
                self._single_view = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
            else:
                self._single_view = tf.function(lambda x: {PROBABILITIES: model(x, training=False)}, reduce_retracing=True)

    def _one_pass(self, tiles: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """The plain network on numpy tiles, one view: probabilities (what `predict_tiles` averages over views; with
        the export's own views `predict_tiles` equals `serve` on tiles no larger than the tile size, 1e-4) and the
        parameter head's raw output where the export has it."""
        self.load_single_view()
        out = self._single_view(tf.constant(tiles))
        return out[PROBABILITIES].numpy(), (out[PARAMETERS].numpy() if PARAMETERS in out else None)

    def _one_view(self, tiles: np.ndarray) -> np.ndarray:
        """The plain network's probabilities for numpy tiles, one view."""
        return self._one_pass(tiles)[0]


def _architecture(model) -> dict:
    """What an export must share with `model` for its weights to fit: backbone, spectral branch, high-pass channels."""
    return {
        "backbone": model.name.removeprefix("blurnet_"),
        "spectrum": any(layer.name == "spectrum" for layer in model.layers),
        "highpass": any(layer.name == "highpass" for layer in model.layers),
    }


def _read_savedmodel_weights(model, folder: Path) -> None:
    """Restore `model`'s weights from the checkpoint of the SavedModel in `folder` (its tracked `model`)."""
    status = None
    try:
        status = tf.train.Checkpoint(model=model).read(str(folder / "variables" / "variables"))
        status.assert_existing_objects_matched()
    except Exception as error:  # a mismatch raises AssertionError, ValueError or NotFoundError
        if status is not None:
            status.expect_partial()  # else TensorFlow logs every unmatched value when the status is deleted
        first_line = str(error).split("\n")[0].split(" Showing ")[0][:300]  # not the list of tensors and values
        raise NotAnExportError(f"{str(folder)!r}: its SavedModel's weights do not fit the network its blurnet.json "
                               f"describes ({first_line}).") from None


def load_export_weights(model, folder: str | os.PathLike) -> dict:
    """Copy every weight of the export in `folder` (its SavedModel's variables) into `model`; returns its metadata.

    `folder` may also be the output of `blurnet.train_keras` (`weights.json` and its `.npz` parts).

    The export must have the same architecture: backbone, spectral branch and
    high-pass channels are checked against `model`'s first, with a `ValueError`
    naming the difference. Lets `fit --init-from` continue from, or fine-tune,
    a model this project trained (for example on your own photographs).
    """
    meta = read_metadata(folder, weights_only=True)
    expected = _architecture(model)
    found = {key: meta.get(key, False) for key in expected}
    if found != expected:
        raise ValueError(f"{str(folder)!r} was trained as {found}, the model to train is {expected}: they must match.")
    folder = Path(folder)
    if bool(meta.get("parameter_head", False)) != has_parameter_head(model):
        # With or without the parameter head: every other layer is shared, the head is new or left out.
        from blurnet.model import copy_shared_weights

        left = copy_shared_weights(model_from_export(folder), model)
        if left:
            logger.info(f"weights: {', '.join(left)} start from random weights ({str(folder)!r} has no parameter head)")
        return meta
    if (folder / SAVED_MODEL_FILE).is_file():
        _read_savedmodel_weights(model, folder)
        return meta
    from blurnet.train_keras import load_npz_weights

    try:
        load_npz_weights(model, folder)
    except ValueError as error:
        raise NotAnExportError(str(error)) from None
    return meta


def model_from_export(folder: str | os.PathLike) -> keras.Model:
    """The export's plain Keras model (one view, one tile): its architecture from `blurnet.json`, its weights loaded."""
    from blurnet.model import create_model

    meta = read_metadata(folder, weights_only=True)
    model = create_model(meta.get("backbone", "densenet121"), weights=None, highpass=meta.get("highpass", False),
                         spectrum=meta.get("spectrum", False), parameter_head=meta.get("parameter_head", False))
    load_export_weights(model, folder)
    return model
