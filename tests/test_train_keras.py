"""`blurnet.train_keras`: its weight files and how `fit --init-from` takes them."""
import json
from pathlib import Path

import numpy as np
import pytest

from blurnet import train_keras
from blurnet.export import NotAnExportError, load_export_weights, read_metadata
from blurnet.model import create_model


@pytest.fixture(scope="module")
def models():
    keras = pytest.importorskip("keras")
    keras.utils.set_random_seed(1)
    a = create_model("mobilenetv2", weights=None, spectrum=True)
    keras.utils.set_random_seed(2)
    b = create_model("mobilenetv2", weights=None, spectrum=True)
    return a, b


def test_npz_parts_round_trip(tmp_path, models, monkeypatch):
    source, target = models
    monkeypatch.setattr(train_keras, "PART_BYTES", 2_000_000)
    paths = train_keras.save_npz_weights(source.get_weights(), tmp_path)
    sizes = [sum(a.nbytes for a in np.load(p).values()) for p in paths]
    assert len(paths) >= 2  # parts of at most 2 MB (an array larger than that is a part of its own)
    assert all(s <= 2_000_000 or len(np.load(p).files) == 1 for s, p in zip(sizes, paths))
    assert not list(tmp_path.glob(".*tmp*"))  # written atomically, no leftovers
    assert json.loads((tmp_path / "weights.json").read_text()) == {"generation": 0, "parts": [p.name for p in paths],
                                                                    "arrays": len(source.get_weights())}
    assert not all(np.array_equal(x, y) for x, y in zip(source.get_weights(), target.get_weights()))
    train_keras.load_npz_weights(target, tmp_path)
    assert all(np.array_equal(x, y) for x, y in zip(source.get_weights(), target.get_weights()))


@pytest.mark.parametrize("killed_at", ["a new part", "weights.json", "deleting the old parts"])
def test_a_save_killed_at_any_step_leaves_one_whole_set_of_weights(tmp_path, models, monkeypatch, killed_at):
    """A time-boxed run is killed while it saves: the folder loads the old weights, or the new, never a mix."""
    old, new = models
    monkeypatch.setattr(train_keras, "PART_BYTES", 2_000_000)
    first = train_keras.save_npz_weights(old.get_weights(), tmp_path)
    real_savez, real_unlink, saved = np.savez, Path.unlink, []

    def savez(path, **arrays):  # the kill comes after the first new part is written
        if saved:
            raise KeyboardInterrupt
        saved.append(path)
        real_savez(path, **arrays)

    def unlink(path, missing_ok=False):
        raise KeyboardInterrupt

    if killed_at == "a new part":
        monkeypatch.setattr(np, "savez", savez)
    elif killed_at == "weights.json":
        real_write = Path.write_text
        monkeypatch.setattr(Path, "write_text", lambda path, text: (_ for _ in ()).throw(KeyboardInterrupt)
                            if ".weights.json" in path.name else real_write(path, text))
    else:
        monkeypatch.setattr(Path, "unlink", unlink)
    with pytest.raises(KeyboardInterrupt):
        train_keras.save_npz_weights(new.get_weights(), tmp_path)
    monkeypatch.undo()
    expected = new if killed_at == "deleting the old parts" else old
    target = create_model("mobilenetv2", weights=None, spectrum=True)
    train_keras.load_npz_weights(target, tmp_path)
    assert all(np.array_equal(x, y) for x, y in zip(target.get_weights(), expected.get_weights()))
    # The next save starts clean: one set of parts on disk, the ones weights.json names.
    train_keras.save_npz_weights(new.get_weights(), tmp_path)
    assert sorted(tmp_path.glob("weights-*.npz")) == sorted(train_keras.weight_parts(tmp_path))
    assert not set(train_keras.weight_parts(tmp_path)) & set(first) and len(first) >= 2


def test_fit_init_from_takes_a_weights_folder(tmp_path, models):
    source, target = models
    train_keras.save_npz_weights(source.get_weights(), tmp_path)
    meta = {"backbone": "mobilenetv2", "spectrum": True, "highpass": False, "image_size": 64, "command": "python -m blurnet.train_keras"}
    (tmp_path / "blurnet.json").write_text(json.dumps(meta))
    with pytest.raises(NotAnExportError, match="saved_model.pb"):
        read_metadata(tmp_path)  # not an export for predict ...
    assert read_metadata(tmp_path, weights_only=True)["command"] == "python -m blurnet.train_keras"  # ... but a start for fit
    target.set_weights([np.zeros_like(w) for w in target.get_weights()])
    assert load_export_weights(target, tmp_path)["image_size"] == 64
    assert all(np.array_equal(x, y) for x, y in zip(source.get_weights(), target.get_weights()))


def test_weights_that_do_not_fit_are_refused(tmp_path, models):
    source, _ = models
    train_keras.save_npz_weights(source.get_weights()[:-1], tmp_path)
    with pytest.raises(ValueError, match="do not fit"):
        train_keras.load_npz_weights(source, tmp_path)
    with pytest.raises(ValueError, match="no weights"):
        train_keras.load_npz_weights(source, tmp_path / "empty")
    (tmp_path / train_keras.weight_parts(tmp_path)[-1]).unlink()
    with pytest.raises(ValueError, match="names weight files that are missing: weights-0-"):
        train_keras.load_npz_weights(source, tmp_path)


@pytest.mark.slow
def test_training_steps_with_the_parameter_head_from_a_start_without_it(tmp_path, models, photos, step_traces):
    """`_build_model` takes every layer but the head from a start without it; `_train` steps and validates both heads,
    its training step traced (and XLA-compiled) once."""
    import argparse

    from blurnet.parameter_head import has_parameter_head
    from data_pipeline.batches import BlurBatchMaker, PipelineConfig

    source, _ = models
    start = tmp_path / "start"
    train_keras.save_npz_weights(source.get_weights(), start)
    (start / "blurnet.json").write_text(json.dumps({"backbone": "mobilenetv2", "spectrum": True, "highpass": False}))
    args = train_keras.parse_args(["--init-from", str(start), "--out", str(tmp_path / "out"), "--image-size", "32",
                                   "--batch-size", "8", "--val-every", "2", "--minutes", "5"])
    assert args.parameter_head is True and isinstance(args, argparse.Namespace)
    model = train_keras._build_model(args)
    assert has_parameter_head(model)
    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(np.asarray(model(x)["probabilities"]), np.asarray(source(x)), atol=1e-5)  # all but the head taken over

    maker = BlurBatchMaker(photos, PipelineConfig(image_size=32, batch_size=8), "train")
    train_keras._MAKER = maker
    batches = [train_keras._make_uint8_batch(i) for i in range(4)]
    images, labels, packed = batches[0]
    assert images.dtype == np.uint8 and packed.shape == (8, 10) and packed[:, 5:].sum() > 0  # targets then their mask
    val = [maker.make_batch(100 + i) for i in range(2)]
    summary = train_keras._train(model, iter(batches), val, args, tmp_path / "out", 0.0)
    assert len(step_traces) == 1  # the training variables were made before the first step
    assert summary["steps"] == 4 and [h["step"] for h in summary["history"]] == [2, 4]
    assert {"val_accuracy", "val_sigma_mae", "val_length_mae", "val_angle_mae_deg", "val_radius_mae"} <= summary["history"][-1].keys()
    assert train_keras.weight_parts(tmp_path / "out")  # the best weights, kept on disk


@pytest.mark.parametrize("families", ["classic", "realistic"])
def test_psf_families_reach_training_and_validation(photos, families):
    """`--psf-families` picks the families of the training and validation makers; validation has training's camera."""
    from data_pipeline.camera import CameraConfig
    from data_pipeline.degrade import PsfFamilies

    args = train_keras.parse_args(["--init-from", "a", "--out", "b", "--image-size", "32", "--psf-families", families])
    assert args.psf_families == families
    training = train_keras.pipeline_config(32, 8, 1, args.psf_families)
    validation = train_keras.validation_maker(args, photos)
    assert training.families == validation.config.families == PsfFamilies.named(families)
    assert validation.camera == training.camera != CameraConfig.none()
    assert validation.augment == training.augment and validation.config.batch_size == 64
    images, labels, _ = validation.make_batch(0)
    assert images.shape == (64, 32, 32, 3) and np.bincount(labels, minlength=4).min() > 0


def test_psf_families_default_and_unknown_name():
    """The default is fit's (`realistic`); an unknown name stops argparse."""
    assert train_keras.parse_args(["--init-from", "a", "--out", "b"]).psf_families == "realistic"
    with pytest.raises(SystemExit):
        train_keras.parse_args(["--init-from", "a", "--out", "b", "--psf-families", "straight"])


def test_palette_share_reaches_training_and_validation(photos, capsys):
    """`--palette-share` sets the palette images of the training and validation makers, as `fit --palette-share`."""
    from data_pipeline.augment import AugmentConfig

    assert train_keras.parse_args(["--init-from", "a", "--out", "b"]).palette_share == 0.05
    args = train_keras.parse_args(["--init-from", "a", "--out", "b", "--image-size", "32", "--palette-share", "0.3"])
    assert train_keras.pipeline_config(32, 8, 1, args.psf_families, args.palette_share).augment == AugmentConfig(palette_probability=0.3)
    assert train_keras.validation_maker(args, photos).augment.palette_probability == 0.3
    assert train_keras._training_maker(32, 8, 0, 1, "classic", 0, 0.3).augment.palette_probability == 0.3
    with pytest.raises(SystemExit):
        train_keras.parse_args(["--init-from", "a", "--out", "b", "--palette-share", "0.45"])
    assert "palette share must be in [0, 0.4]" in capsys.readouterr().err


def test_blurnet_json_records_the_families_and_camera_for_a_re_export(tmp_path):
    """`blurnet.json` beside the weights names the PSF families and camera steps trained on (fit's keys), which
    `fit --init-from OUT --epochs-finetune 0` copies into the export it writes."""
    start, out = tmp_path / "start", tmp_path / "out"
    start.mkdir(), out.mkdir()
    (start / "blurnet.json").write_text(json.dumps({"backbone": "mobilenetv2", "spectrum": True, "psf_families": {"old": 1}}))
    args = train_keras.parse_args(["--init-from", str(start), "--out", str(out), "--image-size", "48", "--psf-families", "classic",
                                   "--generated-scenes", "3"])
    pipeline = train_keras.pipeline_config(48, 128, 1, "classic")
    train_keras._write_metadata(args, out, {"command": "x", "wall_time_s": 1.0}, pipeline)
    written = json.loads((out / "blurnet.json").read_text())
    assert written["psf_families"] == {"shake_fraction": 0.0, "lens_fraction": 0.0, "sharp_shake_fraction": 0.0, "motion_softness": 0.0}
    assert written["camera"]["jpeg_probability"] == pipeline.augment.jpeg_probability > 0
    assert written["camera"]["linear_probability"] == pipeline.camera.linear_probability > 0
    assert written["camera"]["palette_probability"] == pipeline.augment.palette_probability > 0
    assert written["started_from"]["psf_families"] == {"old": 1} and written["image_size"] == 48
    assert written["generated_scenes"] == 3


def test_generated_scenes_join_the_training_maker(monkeypatch):
    """`--generated-scenes N` adds N dead-leaves scenes to the training photographs (as `fit --generated-scenes`)."""
    args = train_keras.parse_args(["--init-from", "a", "--out", "b", "--generated-scenes", "2"])
    assert args.generated_scenes == 2
    plain = train_keras._training_maker(32, 8, 0, 1, "classic")
    maker = train_keras._training_maker(32, 8, 0, 1, "classic", args.generated_scenes)
    assert maker.photo_names == plain.photo_names + ["dead-leaves-0", "dead-leaves-1"]
    with pytest.raises(SystemExit):
        train_keras.parse_args(["--init-from", "a", "--out", "b", "--generated-scenes", "-1"])


def test_bad_arguments_and_folders_stop_before_anything_is_deleted(tmp_path, capsys):
    for flag, value in (("--minutes", "0"), ("--val-every", "0"), ("--val-images", "0"), ("--workers", "0"),
                        ("--batch-size", "-2"), ("--lr", "0"), ("--image-size", "16")):
        with pytest.raises(SystemExit):
            train_keras.parse_args(["--init-from", "a", "--out", "b", flag, value])
        error = capsys.readouterr().err
        assert f"{flag} must be" in error and f"got {value}" in error
    start = tmp_path / "start"
    start.mkdir()
    (start / "blurnet.json").write_text("{}")
    (start / "weights-0.npz").write_bytes(b"the starting weights")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("a user's file")
    cases = ((tmp_path / "nowhere", tmp_path / "new", "holds no blurnet.json"), (start, start, "not --init-from"),
             (start, mine, "must be a new or empty folder"))
    for init_from, out, message in cases:
        with pytest.raises(SystemExit, match=message):
            train_keras.main(["--init-from", str(init_from), "--out", str(out)])
    assert (start / "weights-0.npz").read_bytes() == b"the starting weights" and (mine / "notes.txt").is_file()
    assert not (tmp_path / "new").exists()
    assert train_keras.folder_problem(train_keras.parse_args(["--init-from", str(start), "--out", str(tmp_path / "new")])) is None


def test_a_run_stopped_before_it_trains_keeps_the_earlier_weights_and_metadata(tmp_path, monkeypatch):
    start, out = tmp_path / "start", tmp_path / "out"
    start.mkdir()
    (start / "blurnet.json").write_text(json.dumps({"backbone": "mobilenetv2", "spectrum": True, "image_size": 64}))
    out.mkdir()  # an earlier run's folder: its metadata and weights
    (out / "train_keras.json").write_text("{}")
    (out / "blurnet.json").write_text(json.dumps({"image_size": 64}))
    train_keras.save_npz_weights([np.full(3, 5.0, np.float32)], out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def broken(args):
        raise ValueError("--init-from: the checkpoint cannot be read")

    monkeypatch.setattr(train_keras, "_validation_batches", lambda args: ([], ["astronaut"]))
    monkeypatch.setattr(train_keras.multiprocessing, "get_context", lambda method: type("Pool", (), {"Pool": lambda *a, **k: None}))
    monkeypatch.setattr(train_keras, "_build_model", broken)
    with pytest.raises(ValueError, match="cannot be read"):
        train_keras.main(["--init-from", str(start), "--out", str(out)])
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before and len(before) == 4  # its metadata, manifest, part


def test_a_run_killed_while_it_trains_leaves_its_weights_beside_its_own_metadata(tmp_path, monkeypatch):
    """The best weights are saved as they are found: a run killed then (its time limit) must not leave them beside an
    earlier run's blurnet.json, which `fit --init-from` would read as theirs."""
    start, out = tmp_path / "start", tmp_path / "out"
    start.mkdir()
    (start / "blurnet.json").write_text(json.dumps({"backbone": "mobilenetv2", "spectrum": True, "image_size": 64}))
    out.mkdir()  # an earlier run's folder: its metadata and weights
    (out / "train_keras.json").write_text("{}")
    (out / "blurnet.json").write_text(json.dumps({"image_size": 64, "psf_families": {"earlier": True}}))
    train_keras.save_npz_weights([np.zeros(3, np.float32)], out)

    class Stub:  # what main() touches of the pool, the batches and the model
        def __getattr__(self, name):
            return lambda *args, **kwargs: self

        def count_params(self):
            return 3

    def killed(model, batches, val_batches, args, out, started):
        train_keras.save_npz_weights([np.full(3, 7.0, np.float32)], out)  # a best found, then the time limit
        raise KeyboardInterrupt

    monkeypatch.setattr(train_keras, "_validation_batches", lambda args: ([], ["astronaut"]))
    monkeypatch.setattr(train_keras.multiprocessing, "get_context", lambda method: Stub())
    monkeypatch.setattr(train_keras, "_build_model", lambda args: Stub())
    monkeypatch.setattr(train_keras, "_batches", lambda pool, start, ahead: Stub())
    monkeypatch.setattr(train_keras, "_train", killed)
    with pytest.raises(KeyboardInterrupt):
        train_keras.main(["--init-from", str(start), "--out", str(out), "--image-size", "96", "--psf-families", "classic"])
    meta = read_metadata(out, weights_only=True)
    assert meta["image_size"] == 96 and meta["training"]["finished"] is False and meta["psf_families"]["shake_fraction"] == 0.0
    assert meta["training"]["command"].endswith("--psf-families classic") and meta["started_from"]["image_size"] == 64
    parts = train_keras.weight_parts(out)
    assert sorted(out.glob("weights-*.npz")) == parts and np.load(parts[0])["w0000"].tolist() == [7.0, 7.0, 7.0]
