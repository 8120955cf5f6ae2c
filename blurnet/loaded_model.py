"""What every loaded blurnet model shares, without TensorFlow: its `blurnet.json` and tiles answered view by view.

`blurnet.export.ExportedModel` (a SavedModel) and `blurnet.runtimes`' `OnnxModel`
and `LiteRTModel` derive from `LoadedModel`; each sets `folder`, `metadata` and
`default_views` and supplies `_one_view(tiles) -> probabilities` (numpy in, numpy out).
"""
from __future__ import annotations

import numpy as np

from blurnet.views import average_over_views, check_views
from data_pipeline.classes import NUM_CLASSES
from data_pipeline.parameters import PARAMETER_TARGETS

METADATA_FILE = "blurnet.json"
TILE_BATCH = 16  # tiles per group in `predict_tiles`: on 2 CPU cores 16 a call run 1.6 times as fast as 64


class LoadedModel:
    """The interface `blurnet predict` uses: `name`, `image_size`, `views`, `predict_tiles`, `estimate_tiles`."""

    default_views = 1  # views when `blurnet.json` has no `test_time_views`
    has_parameters = False  # whether `estimate_tiles` answers (a SavedModel with the parameter head)

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

    def _checked(self, tiles) -> np.ndarray:
        """`tiles` as float32; subclasses add their own checks."""
        return np.asarray(tiles, np.float32)

    def predict_tiles(self, tiles, views: int, batch: int = TILE_BATCH) -> np.ndarray:
        """Probabilities `(n, 4)` for tiles `(n, h, w, 3)` (float32 0..255) averaged over `views` (1, 4 or 8) views,
        `batch` tiles a group, so a caller can spend fewer views than the model's own call."""
        views = check_views(views)
        return _in_groups(lambda group: average_over_views(self._one_view, group, views), self._checked(tiles), batch,
                          NUM_CLASSES)

    def _parameters(self, tiles: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def estimate_tiles(self, tiles, batch: int = TILE_BATCH) -> np.ndarray:
        """The parameter head's raw output `(n, 5)` (`data_pipeline.parameters.PARAMETER_TARGETS`) for tiles
        `(n, h, w, 3)`, one view, `batch` tiles a call; only where `has_parameters`."""
        if not self.has_parameters:
            raise ValueError(f"model {self.name!r} has no parameter head (fit it with --parameter-head).")
        return _in_groups(self._parameters, self._checked(tiles), batch, len(PARAMETER_TARGETS))


def _in_groups(answer, tiles: np.ndarray, batch: int, width: int) -> np.ndarray:
    """`answer` applied to `tiles` `batch` at a time, concatenated: `(n, width)`, `(0, width)` for no tiles."""
    parts = [answer(tiles[i : i + batch]) for i in range(0, len(tiles), batch)]
    return np.concatenate(parts, axis=0) if parts else np.zeros((0, width), np.float32)
