"""Checkpoint callbacks: a write that dies half-way leaves the previous file whole."""
import json

import keras
import numpy as np
import pytest

from blurnet.callbacks import BestWeights, CrashSafeBackup


def tiny_model():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer="adam", loss="mse")
    return model


def die_half_way(model):
    """Make `save_weights` write a truncated file, as a killed process would, then fail."""
    def save_weights(path, overwrite=True):
        with open(path, "wb") as f:
            f.write(b"\x89HDF\r\n\x1a\n" + b"\0" * 64)
        raise KeyboardInterrupt("killed while writing")
    model.save_weights = save_weights


def test_backup_survives_a_kill_during_its_write(tmp_path):
    model = tiny_model()
    x, y = np.ones((4, 3), "float32"), np.zeros((4, 2), "float32")
    backup = CrashSafeBackup(str(tmp_path / "backup"), delete_checkpoint=False)
    model.fit(x, y, epochs=2, verbose=0, callbacks=[backup])
    saved = [w.copy() for w in model.get_weights()]
    assert json.loads((tmp_path / "backup" / "training_metadata.json").read_text())["epoch"] == 2

    die_half_way(model)
    backup._current_epoch = 3
    with pytest.raises(KeyboardInterrupt):
        backup._save_model()
    assert sorted(p.name for p in (tmp_path / "backup").iterdir()) == ["latest.weights.h5", "training_metadata.json"]
    assert json.loads((tmp_path / "backup" / "training_metadata.json").read_text())["epoch"] == 2

    fresh = tiny_model()
    history = fresh.fit(x, y, epochs=3, verbose=0, callbacks=[CrashSafeBackup(str(tmp_path / "backup"), delete_checkpoint=False)])
    assert len(history.history["loss"]) == 1  # resumed at epoch 2 of 3
    restored = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])  # no optimizer to restore
    restored.load_weights(tmp_path / "backup" / "latest.weights.h5")
    assert not np.allclose(restored.get_weights()[0], saved[0])  # epoch 3 was saved over it


@pytest.mark.parametrize("damaged", ["latest.weights.h5", "training_metadata.json"])
def test_a_damaged_backup_is_named_in_a_value_error(tmp_path, damaged):
    model = tiny_model()
    x, y = np.ones((4, 3), "float32"), np.zeros((4, 2), "float32")
    model.fit(x, y, epochs=1, verbose=0, callbacks=[CrashSafeBackup(str(tmp_path / "backup"), delete_checkpoint=False)])
    path = tmp_path / "backup" / damaged
    path.write_bytes(path.read_bytes()[:20])  # cut short, as a half-finished copy of the run folder leaves it
    with pytest.raises(ValueError, match=r"cannot resume from the backup in '.*backup', it is damaged .*without --resume"):
        tiny_model().fit(x, y, epochs=2, verbose=0, callbacks=[CrashSafeBackup(str(tmp_path / "backup"), delete_checkpoint=False)])


def test_resume_restores_the_optimizer_into_variables_made_before_fit(tmp_path):
    """`fit` makes the training variables before `model.fit` (`create_training_variables`); a resumed run's backup
    still restores the optimizer's state into them: its step counter counts the steps before the interruption."""
    from blurnet.model import create_training_variables

    x, y = np.arange(12, dtype="float32").reshape(4, 3), np.ones((4, 2), "float32")
    first = tiny_model()
    first.fit(x, y, epochs=2, batch_size=2, verbose=0, callbacks=[CrashSafeBackup(str(tmp_path / "b"), delete_checkpoint=False)])
    resumed = tiny_model()
    create_training_variables(resumed, x[:2], y[:2])
    assert int(resumed.optimizer.iterations) == 0
    history = resumed.fit(x, y, epochs=3, batch_size=2, verbose=0,
                          callbacks=[CrashSafeBackup(str(tmp_path / "b"), delete_checkpoint=False)])
    assert len(history.history["loss"]) == 1 and int(resumed.optimizer.iterations) == 3 * 2  # 2 epochs restored, 1 run


def test_best_weights_saves_only_improvements_and_survives_a_failed_write(tmp_path):
    model = tiny_model()
    best = BestWeights(tmp_path / "best.weights.h5", "val_accuracy", initial_best=0.5)
    best.set_model(model)
    best.on_epoch_end(0, {"val_accuracy": 0.4})
    assert not (tmp_path / "best.weights.h5").exists()  # not better than the resumed run's 0.5
    best.on_epoch_end(1, {"val_accuracy": 0.7})
    first = [w.copy() for w in model.get_weights()]
    model.set_weights([w + 1 for w in first])
    best.on_epoch_end(2, {"val_accuracy": 0.7})  # a tie is not an improvement
    check = tiny_model()
    check.load_weights(tmp_path / "best.weights.h5")
    np.testing.assert_allclose(check.get_weights()[0], first[0])
    die_half_way(model)
    with pytest.raises(KeyboardInterrupt):
        best.on_epoch_end(3, {"val_accuracy": 0.9})
    check.load_weights(tmp_path / "best.weights.h5")  # still the whole file from epoch 1
    np.testing.assert_allclose(check.get_weights()[0], first[0])
    assert [p.name for p in tmp_path.iterdir()] == ["best.weights.h5"]



def test_the_best_value_travels_with_its_weights_so_a_resume_never_overwrites_them_with_worse(tmp_path):
    from blurnet.callbacks import saved_best, training_callbacks

    model = tiny_model()
    best = BestWeights(tmp_path / "best.weights.h5", "val_accuracy")
    best.set_model(model)
    best.on_epoch_end(0, {"val_accuracy": 0.8})
    assert saved_best(tmp_path / "best.weights.h5", "val_accuracy") == pytest.approx(0.8)
    assert saved_best(tmp_path / "best.weights.h5", "val_loss") is None and saved_best(tmp_path / "none.h5", "a") is None
    # A kill after the checkpoint, before the training log got the epoch's row: the log says 0.6 at best
    (tmp_path / "training_log.csv").write_text("epoch,val_accuracy\n0,0.6\n")
    resumed = next(c for c in training_callbacks(tmp_path, "finetune", 3) if isinstance(c, BestWeights))
    resumed.set_model(tiny_model())
    resumed.on_epoch_end(1, {"val_accuracy": 0.7})  # better than the log's 0.6, worse than the checkpoint's 0.8
    check = tiny_model()
    check.load_weights(tmp_path / "best.weights.h5")  # loads with its value beside the weights
    np.testing.assert_allclose(check.get_weights()[0], model.get_weights()[0])
    assert saved_best(tmp_path / "best.weights.h5", "val_accuracy") == pytest.approx(0.8)


def write_stage_logs(run, rows):
    """`training_log.csv` and `stages.jsonl` of a run folder from `(stage, epoch, val_accuracy)` rows."""
    run.mkdir(parents=True, exist_ok=True)
    (run / "training_log.csv").write_text("epoch,val_accuracy\n" + "".join(f"{e},{v}\n" for _, e, v in rows) + "3,0.")
    (run / "stages.jsonl").write_text("".join(json.dumps({"stage": s, "epoch": e}) + "\n" for s, e, _ in rows) + '{"stage": "fi')


def test_a_resumed_stage_counts_the_epochs_it_already_waited(tmp_path):
    from blurnet.callbacks import ResumableEarlyStopping, stage_history, stopped_early

    # head: epoch 0; finetune: epochs 1..5, best at epoch 2 (0.8), epoch 4 logged twice (a resume repeated it)
    rows = [("head", 0, 0.9), ("finetune", 1, 0.5), ("finetune", 2, 0.8), ("finetune", 3, 0.7), ("finetune", 4, 0.6),
            ("finetune", 4, 0.75), ("finetune", 5, 0.79)]
    write_stage_logs(tmp_path, rows)
    history = stage_history(tmp_path, "finetune", "val_accuracy")
    assert history == [(1, 0.5), (2, 0.8), (3, 0.7), (4, 0.75), (5, 0.79)]  # the cut lines left out
    assert stage_history(tmp_path, "head", "val_accuracy") == [(0, 0.9)] and stage_history(tmp_path / "x", "head", "a") == []
    assert stopped_early(tmp_path, "finetune", "val_accuracy", patience=3) == 5  # 3 epochs without progress
    assert stopped_early(tmp_path, "finetune", "val_accuracy", patience=4) is None
    assert stopped_early(tmp_path, "finetune", "val_accuracy", patience=1, mode="min") == 5  # min: best 0.5 at epoch 1
    assert stopped_early(tmp_path, "head", "val_accuracy", patience=0) is None  # its last epoch was its best

    stopping = ResumableEarlyStopping(history, monitor="val_accuracy", mode="max", patience=4)
    stopping.set_model(keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)]))
    stopping.model.stop_training = False
    stopping.on_train_begin()
    assert (stopping.wait, stopping.best, stopping.best_epoch) == (3, 0.8, 2)
    stopping.on_epoch_end(6, {"val_accuracy": 0.78})  # a fourth epoch without progress: patience used up
    assert stopping.model.stop_training is True and stopping.stopped_epoch == 6
    fresh = ResumableEarlyStopping([], monitor="val_accuracy", mode="max", patience=4)
    fresh.on_train_begin()
    assert (fresh.wait, fresh.best) == (0, None)


def test_a_stage_that_stopped_early_is_not_trained_again_on_resume(tmp_path, monkeypatch):
    import blurnet.train as train
    from blurnet.config import FitConfig

    calls = []
    monkeypatch.setattr(train, "fit_stage", lambda *args, **kwargs: calls.append(kwargs))
    write_stage_logs(tmp_path, [("finetune", 0, 0.8), ("finetune", 1, 0.7), ("finetune", 2, 0.7)])
    config = FitConfig(patience=2)
    train.run_stage(None, config, None, None, tmp_path, "finetune", "val_accuracy", epochs=10)
    assert calls == []
    train.run_stage(None, FitConfig(patience=3), None, None, tmp_path, "finetune", "val_accuracy", epochs=10)
    assert len(calls) == 1 and calls[0]["epochs"] == 10


def test_every_reader_of_the_training_log_leaves_out_a_line_cut_short(tmp_path):
    from blurnet.callbacks import best_logged
    from blurnet.plots import read_training_log

    log = tmp_path / "training_log.csv"
    # a kill while epoch 2's row was appended: its loss was 0.0451 and its accuracy never written
    log.write_text("epoch,probabilities_accuracy,val_loss\n0,0.25,0.9\n1,0.5,0.3\n2,0.6,0.04")
    assert best_logged(log, "val_loss", "min") == 0.3
    assert read_training_log(log) == {"epoch": [0.0, 1.0], "accuracy": [0.25, 0.5], "val_loss": [0.9, 0.3]}
    log.write_text("epoch,accuracy,val_loss\n0,0.25,0.9\n1,x,0.3\n2,0.5,0.1,7\n3,0.75\n")  # a cell that is no number; an extra cell; one missing
    assert best_logged(log, "val_loss", "min") == 0.9
    columns = read_training_log(log)  # each column one value per row kept: the missing cell is NaN, not a shift
    assert columns["epoch"] == [0.0, 3.0] and columns["accuracy"] == [0.25, 0.75]
    assert columns["val_loss"][0] == 0.9 and np.isnan(columns["val_loss"][1]) and len(columns) == 3
    assert best_logged(tmp_path / "missing.csv") is None and read_training_log(tmp_path / "missing.csv") is None


def test_a_resumed_run_appends_after_the_whole_lines_of_its_logs(tmp_path):
    from blurnet.callbacks import StageLogger, stage_history, training_callbacks

    write_stage_logs(tmp_path, [("finetune", 0, 0.5), ("finetune", 1, 0.6)])  # both logs end in a line cut short
    callbacks = training_callbacks(tmp_path, "finetune", 3)
    assert (tmp_path / "training_log.csv").read_text() == "epoch,val_accuracy\n0,0.5\n1,0.6\n"
    logger = next(c for c in callbacks if isinstance(c, StageLogger))
    with open(tmp_path / "training_log.csv", "a") as f:  # what CSVLogger appends for the resumed epochs
        f.write("2,0.7\n3,0.8\n")
    logger.on_epoch_end(2)
    logger.on_epoch_end(3)
    assert stage_history(tmp_path, "finetune", "val_accuracy") == [(0, 0.5), (1, 0.6), (2, 0.7), (3, 0.8)]
