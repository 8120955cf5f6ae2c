"""The callbacks of every training stage (`training_callbacks`), with checkpoints a killed process cannot corrupt.

Keras's `BackupAndRestore` and `ModelCheckpoint` write their `.weights.h5` files in place: a process
killed during the write (a pre-empted job, Ctrl-C twice, out of memory) leaves a truncated HDF5 file
that the next `fit --resume` cannot open. These callbacks write every file to a temporary sibling and
rename it over the old one (`blurnet.atomic.atomic_file`), so a file on disk is always a whole one.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import h5py
import keras

from blurnet.atomic import atomic_file
from blurnet.training_log import drop_cut_line, read_log_rows, whole_lines


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

    `initial_best` is the best value already reached (a resumed run passes the one saved with the checkpoint,
    `saved_best`), so a resumed run does not overwrite a better checkpoint with a worse one. The value is written
    into the weights file before it takes its name, so the two never disagree (the training log is written after
    it: a kill between the two left the log behind the checkpoint).
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
            with h5py.File(tmp, "a") as weights:
                weights.attrs[BEST_VALUE_ATTRIBUTE] = json.dumps({"monitor": self.monitor, "value": float(value)})


#: The attribute of `best.weights.h5` that holds the value it was saved for (`BestWeights`).
BEST_VALUE_ATTRIBUTE = "blurnet_best"


def saved_best(path: Path, monitor: str) -> float | None:
    """The `monitor` value `BestWeights` saved with the weights in `path`; None without a file, a value, or for
    another monitor."""
    try:
        with h5py.File(path, "r") as weights:
            record = json.loads(weights.attrs[BEST_VALUE_ATTRIBUTE])
    except (OSError, KeyError, ValueError, TypeError):
        return None
    return float(record["value"]) if record.get("monitor") == monitor else None


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
    values = [row[key] for row in read_log_rows(log) if key in row]
    return (max if mode == "max" else min)(values) if values else None


def stage_history(run: Path, stage: str, monitor: str) -> list[tuple[int, float]]:
    """`(epoch, monitor's value)` of every epoch `stage` completed in the run folder `run`, in epoch order:
    `stages.jsonl` names each epoch's stage, `training_log.csv` holds its values. An epoch logged twice (a resume
    repeated it) counts once, with its last row; a last line that a kill cut short is left out."""
    stages, log = run / "stages.jsonl", run / "training_log.csv"
    if not (stages.is_file() and log.is_file()):
        return []
    epochs = set()
    for line in whole_lines(stages):
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("stage") == stage:
            epochs.add(int(entry["epoch"]))
    values = {int(row["epoch"]): row[monitor] for row in read_log_rows(log) if "epoch" in row and monitor in row}
    return sorted((epoch, value) for epoch, value in values.items() if epoch in epochs)


def epochs_since_best(history: list[tuple[int, float]], mode: str = "max") -> int:
    """Epochs logged after the first best value of `history` (`stage_history`), as `EarlyStopping` counts them."""
    values = [value for _, value in history]
    best = (max if mode == "max" else min)(values)
    return len(values) - 1 - values.index(best)


def stopped_early(run: Path, stage: str, monitor: str, patience: int, mode: str = "max") -> int | None:
    """The epoch at which `stage` of the run in `run` stopped early (its patience used up), or None: a resumed run
    does not train such a stage again."""
    history = stage_history(run, stage, monitor)
    if not history:
        return None
    waited = epochs_since_best(history, mode)
    return history[-1][0] if waited > 0 and waited >= patience else None


class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """`keras.callbacks.EarlyStopping` that starts from the epochs its stage already logged (`history`,
    `stage_history`): a resumed stage keeps its best value and the epochs waited since, instead of a fresh count."""

    def __init__(self, history: list[tuple[int, float]] = (), **kwargs):
        super().__init__(**kwargs)
        self.history = list(history)

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        if self.history:
            self.wait = epochs_since_best(self.history, self.mode)
            self.best_epoch, self.best = self.history[len(self.history) - 1 - self.wait]


def backup_epoch(run: Path, stage: str) -> int:
    """The epoch a resumed `stage` of the run in `run` continues from: the one its backup recorded
    (`CrashSafeBackup`'s `training_metadata.json`; Keras starts `fit` there), 0 without a readable backup."""
    try:
        return int(json.loads((run / "backup" / stage / "training_metadata.json").read_text())["epoch"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def training_callbacks(run: Path, stage: str, patience: int, monitor: str = "val_accuracy", mode: str = "max") -> list:
    """Callbacks of one training stage writing into the run folder `run`.

    `backup/<stage>/` (resume), `best.weights.h5` (best `monitor`, the validation accuracy by default, of the run
    across stages and resumes; `mode="min"` for a loss), early stopping after `patience` epochs without progress
    (counted across resumes),
    `training_log.csv`, `tensorboard/`, a stop on NaN, and `stages.jsonl`.
    """
    for log in (run / "training_log.csv", run / "stages.jsonl"):  # both are appended to
        drop_cut_line(log)
    best = saved_best(run / "best.weights.h5", monitor)  # else a checkpoint saved before the value was kept with it
    best = best if best is not None else best_logged(run / "training_log.csv", monitor, mode)
    return [
        CrashSafeBackup(str(run / "backup" / stage), save_freq="epoch", delete_checkpoint=False),
        BestWeights(run / "best.weights.h5", monitor, mode=mode, initial_best=best),
        ResumableEarlyStopping(stage_history(run, stage, monitor), monitor=monitor, mode=mode, patience=patience),
        keras.callbacks.CSVLogger(str(run / "training_log.csv"), append=True),
        keras.callbacks.TensorBoard(str(run / "tensorboard"), write_graph=False),
        keras.callbacks.TerminateOnNaN(),
        StageLogger(run / "stages.jsonl", stage),
    ]
