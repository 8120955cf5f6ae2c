"""What every loaded blurnet model shares, without TensorFlow: its `blurnet.json` and tiles answered view by view.

`blurnet.export.ExportedModel` (a SavedModel) and `blurnet.runtimes`' `OnnxModel`
and `LiteRTModel` derive from `LoadedModel`; each sets `folder`, `metadata` and
`default_views` and supplies `_one_view(tiles) -> probabilities` (numpy in, numpy out); a model with the
parameter head also sets `has_parameters` and supplies `_one_pass(tiles) -> (probabilities, parameters)`.
"""
from __future__ import annotations

import numpy as np

from blurnet.views import ANSWER_VIEW_SIGNS, average_over_views, check_views
from data_pipeline.classes import NUM_CLASSES
from data_pipeline.parameters import PARAMETER_TARGETS

METADATA_FILE = "blurnet.json"
TILE_BATCH = 16  # tiles per group in `predict_tiles`: on 2 CPU cores 16 a call run 1.6 times as fast as 64


class LoadedModel:
    """The interface `blurnet predict` uses: `name`, `image_size`, `views`, `answer_tiles`, `predict_tiles`,
    `estimate_tiles`."""

    default_views = 1  # views when `blurnet.json` has no `test_time_views`
    has_parameters = False  # whether `estimate_tiles` answers (a SavedModel, ONNX or LiteRT file with the parameter head)

    @property
    def name(self) -> str:
        """The folder name of the model."""
        return self.folder.name

    @property
    def image_size(self) -> int:
        """Side of the tiles the model was trained on (`image_size` in `blurnet.json`)."""
        return int(self.metadata.get("image_size", 128))

    @property
    def views(self) -> int:
        """How many flipped/rotated views the model's own call averages (`test_time_views` in `blurnet.json`)."""
        return check_views(self.metadata.get("test_time_views") or self.default_views)

    def _one_view(self, tiles: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _one_pass(self, tiles: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """One view of numpy tiles: probabilities `(n, 4)` and, where `has_parameters`, the head's raw output `(n, 5)`
        from the same pass (else None)."""
        return self._one_view(tiles), None

    def _checked(self, tiles) -> np.ndarray:
        """`tiles` as float32; subclasses add their own checks."""
        return np.asarray(tiles, np.float32)

    def answer_tiles(self, tiles, views: int, batch: int = TILE_BATCH) -> tuple[np.ndarray, np.ndarray | None]:
        """Probabilities `(n, 4)` for tiles `(n, h, w, 3)` (float32 0..255) averaged over `views` (1, 4 or 8) views,
        and, where `has_parameters`, the parameter head's raw output `(n, 5)`
        (`data_pipeline.parameters.PARAMETER_TARGETS`) averaged over the same views, each view's angle turned back
        first (`blurnet.views.ANSWER_VIEW_SIGNS`), from the same network passes (else None); `batch` tiles a
        group. On `benchmarks/accuracy.py`'s held-out images 8 views cut the head's errors by 4 to 25 %."""
        views, tiles = check_views(views), self._checked(tiles)
        width = NUM_CLASSES + (len(PARAMETER_TARGETS) if self.has_parameters else 0)
        answers = [np.zeros((0, width), np.float32)]

        def one_view(images):  # probabilities, then the raw parameters where the model has them
            return np.concatenate([np.asarray(a, np.float32) for a in self._one_pass(images) if a is not None], axis=1)

        signs = ANSWER_VIEW_SIGNS if self.has_parameters else None
        for start in range(0, len(tiles), batch):
            answers.append(np.asarray(average_over_views(one_view, tiles[start : start + batch], views, signs), np.float32))
        answers = np.concatenate(answers, axis=0)
        return answers[:, :NUM_CLASSES], (answers[:, NUM_CLASSES:] if self.has_parameters else None)

    def predict_tiles(self, tiles, views: int, batch: int = TILE_BATCH) -> np.ndarray:
        """Probabilities `(n, 4)` for tiles `(n, h, w, 3)` (float32 0..255) averaged over `views` (1, 4 or 8) views,
        `batch` tiles a group, so a caller can spend fewer views than the model's own call."""
        return self.answer_tiles(tiles, views, batch)[0]

    def estimate_tiles(self, tiles, views: int = 1, batch: int = TILE_BATCH) -> np.ndarray:
        """The parameter head's raw output `(n, 5)` (`data_pipeline.parameters.PARAMETER_TARGETS`) for tiles
        `(n, h, w, 3)`, averaged over `views` views (`answer_tiles`), `batch` tiles a call; only where
        `has_parameters`."""
        if not self.has_parameters:
            raise ValueError(f"model {self.name!r} has no parameter head (fit it with --parameter-head).")
        return self.answer_tiles(tiles, views, batch)[1]


def weights_origin(metadata: dict) -> str:
    """Where the backbone's weights first came from (`imagenet`, `none` or `file:PATH`) for a model whose
    `blurnet.json` is `metadata`, following the exports it was fine-tuned from (`started_from`); an older
    export that recorded only `export:FOLDER` and not its source gives that string."""
    weights = metadata.get("weights", "none")
    while isinstance(weights, str) and weights.startswith("export:") and isinstance(metadata.get("started_from"), dict):
        metadata = metadata["started_from"]
        weights = metadata.get("weights", "none")
    return weights
