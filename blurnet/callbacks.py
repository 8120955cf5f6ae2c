"""The callbacks of every training stage (`training_callbacks`), with checkpoints a killed process cannot corrupt.

Keras's `BackupAndRestore` and `ModelCheckpoint` write their `.weights.h5` files in place: a process
killed during the write (a pre-empted job, Ctrl-C twice, out of memory) leaves a truncated HDF5 file
that the next `fit --resume` cannot open. These callbacks write every file to a temporary sibling and
rename it over the old one (`blurnet.atomic.atomic_file`), so a file on disk is always a whole one.
"""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import keras

from blurnet.atomic import atomic_file


class CrashSafeBackup(keras.callbacks.BackupAndRestore):
    """`keras.callbacks.BackupAndRestore` whose weights and epoch files are replaced atomically.

    The weights are renamed into place before the epoch counter: a kill between the two renames
    (microseconds) resumes from the newer weights and repeats one epoch, never from a broken file.
    """

    def on_train_begin(self, logs=None):
        """Keras's restore, with a damaged backup (a run folder copied or synced half-way) named in a `ValueError`
        instead of a bare HDF5 or JSON error."""
        try:
            super().on_train_begin(logs)
        except (OSError, ValueError) as error:  # json.JSONDecodeError is a ValueError
            raise ValueError(f"cannot resume from the backup in {str(self.backup_dir)!r}, it is damaged ({error}); "
                             "start afresh without --resume, or restore the run folder.") from None

    def _save_model(self):
        with atomic_file(self._weights_path) as tmp:
            self.model.save_weights(str(tmp), overwrite=True)
        with atomic_file(self._training_metadata_path) as tmp:
            Path(tmp).write_text(json.dumps({"epoch": self._current_epoch, "batch": self._last_batch_seen}))


class BestWeights(keras.callbacks.Callback):
    """Save the model's weights to `path` whenever `monitor` beats its best value (higher is better, or lower
    with `mode="min"`).

    `initial_best` is the best value already reached (a resumed run passes its log's best), so a
    resumed run does not overwrite a better checkpoint with a worse one.
    """

    def __init__(self, path: str | Path, monitor: str = "val_accuracy", initial_best: float | None = None, mode: str = "max"):
        super().__init__()
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}.")
        self.path, self.monitor, self.sign = Path(path), monitor, 1.0 if mode == "max" else -1.0
        self.best = -math.inf if initial_best is None else self.sign * float(initial_best)  # kept as sign * value

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None or not self.sign * float(value) > self.best:
            return
        self.best = self.sign * float(value)
        with atomic_file(self.path) as tmp:
            self.model.save_weights(str(tmp), overwrite=True)


class StageLogger(keras.callbacks.Callback):
    """Appends `{"stage", "epoch"}` per epoch to `path` (JSON lines), so the shared training log can be split into stages."""

    def __init__(self, path: str | Path, stage: str):
        super().__init__()
        self.path, self.stage = Path(path), stage

    def on_epoch_end(self, epoch, logs=None):
        with open(self.path, "a") as f:
            f.write(json.dumps({"stage": self.stage, "epoch": epoch}) + "\n")


def best_logged(log: Path, key: str = "val_accuracy", mode: str = "max") -> float | None:
    """Best (`mode` "max" or "min") `key` in a CSV training log (None without one): a resumed run keeps its best checkpoint."""
    if not log.exists():
        return None
    with open(log, newline="") as f:
        values = [float(row[key]) for row in csv.DictReader(f) if row.get(key) not in (None, "")]
    return (max if mode == "max" else min)(values) if values else None


def training_callbacks(run: Path, stage: str, patience: int, monitor: str = "val_accuracy", mode: str = "max") -> list:
    """Callbacks of one training stage writing into the run folder `run`.

    `backup/<stage>/` (resume), `best.weights.h5` (best `monitor`, the validation accuracy by default, of the run
    across stages and resumes; `mode="min"` for a loss), early stopping after `patience` epochs without progress,
    `training_log.csv`, `tensorboard/`, a stop on NaN, and `stages.jsonl`.
    """
    return [
        CrashSafeBackup(str(run / "backup" / stage), save_freq="epoch", delete_checkpoint=False),
        BestWeights(run / "best.weights.h5", monitor, initial_best=best_logged(run / "training_log.csv", monitor, mode), mode=mode),
        keras.callbacks.EarlyStopping(monitor=monitor, mode=mode, patience=patience),
        keras.callbacks.CSVLogger(str(run / "training_log.csv"), append=True),
        keras.callbacks.TensorBoard(str(run / "tensorboard"), write_graph=False),
        keras.callbacks.TerminateOnNaN(),
        StageLogger(run / "stages.jsonl", stage),
    ]
