import csv
import dataclasses
import io
import json
import logging
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from blurnet.config import FitConfig
from blurnet.model import create_backbone, create_training_variables
from blurnet.train import compile_model, estimate_minutes, estimate_parts, fit, fit_stage, fit_verbosity, load_data, pipeline_config
from data_pipeline.augment import AugmentConfig, choose_format
from data_pipeline.camera import CameraConfig
from data_pipeline.classes import BlurRanges
from data_pipeline.degrade import PsfFamilies

TINY = dict(image_size=32, batch_size=8, epochs_head=1, epochs_finetune=1, steps_per_epoch=2, val_images=8, test_images=16)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """One deterministic MobileNetV2 fit without the parameter head (2 epochs from scratch, 1 held-out view) that the
    fine-tune tests start from and the determinism test repeats: (its config, its export folder, its run folder)."""
    from tensorflow.python.framework import config as tf_config  # disable_op_determinism has no public name

    from conftest import write_photo_folder

    root = tmp_path_factory.mktemp("source")
    config = FitConfig(data=str(write_photo_folder(root / "photos")), out=str(root / "models"), name="source",
                       weights=None, backbone="mobilenetv2", run_dir=str(root / "runs"), test_time_views=1,
                       parameter_head=False, deterministic=True, **{**TINY, "epochs_head": 0, "epochs_finetune": 2})
    was_enabled = tf_config.is_op_determinism_enabled()
    try:
        export = fit(config)
    finally:
        if not was_enabled:  # fit(deterministic=True) turned it on for the process
            tf_config.disable_op_determinism()
    return config, export, root / "runs" / "source"


@pytest.mark.slow
def test_fit_two_stages_from_a_weights_file_and_export(tmp_path, photo_folder, capsys, caplog, monkeypatch):
    from data_pipeline.batches import BlurBatchMaker

    drawn = []  # training batch indices, in the order they are made
    make_batch = BlurBatchMaker.make_batch
    monkeypatch.setattr(BlurBatchMaker, "make_batch", lambda self, index: (self.stream == "train" and drawn.append(int(index)))
                        or make_batch(self, index))
    caplog.set_level(logging.INFO, logger="blurnet")
    weights = tmp_path / "backbone.weights.h5"
    create_backbone(weights=None).save_weights(weights)
    config = FitConfig(data=str(photo_folder), out=str(tmp_path / "models"), name="tiny", weights=str(weights),
                       run_dir=str(tmp_path / "runs"), unfreeze_from="pool4", psf_families="classic",
                       blur_ranges={"defocus_radius": (2, 10)}, **TINY)
    target = fit(config)
    meta = json.loads((target / "blurnet.json").read_text())
    assert meta["blur_ranges"] == {**BlurRanges().to_dict(), "defocus_radius": [2.0, 10.0]}  # what it trained with
    assert meta["weights"] == f"file:{weights}"
    assert meta["psf_families"] == {"shake_fraction": 0.0, "lens_fraction": 0.0, "sharp_shake_fraction": 0.0, "motion_softness": 0.0}
    assert meta["image_size"] == 32 and meta["fit_config"]["unfreeze_from"] == "pool4"
    held = meta["held_out"]
    assert held["n_images"] == 16 and np.array(held["confusion_matrix"]).sum() == 16
    assert "photographs in" in meta["training_data"]
    # the parameter head trains by default: its held-out errors are recorded, the export has `estimate`
    assert meta["parameter_head"] is True
    assert {"sigma_mae", "length_mae", "angle_mae_deg", "radius_mae"} <= held["parameters"].keys()
    assert all(np.isfinite(v) and v >= 0 for k, v in held["parameters"].items() if k.endswith(("_mae", "_mae_deg")))
    rows = list(csv.DictReader(open(target / "training_log.csv")))
    assert [int(r["epoch"]) for r in rows] == [0, 1]  # head epoch 0, fine-tune epoch 1
    stages = [json.loads(l)["stage"] for l in open(tmp_path / "runs" / "tiny" / "stages.jsonl")]
    assert stages == ["head", "finetune"]
    assert drawn.count(0) == drawn.count(1) == 1 and 2 in drawn  # stage 2 goes on from batch 2, not from 0 again
    out = capsys.readouterr().out  # Keras's epoch lines
    assert "\r" not in out and "\x1b[" not in out  # not a terminal: one plain line per epoch
    assert len(re.findall(r"^2/2 - .*val_probabilities_accuracy", out, re.M)) == 2  # two epochs, two steps each
    progress = [r.message for r in caplog.records if r.name == "blurnet.train"]  # blurnet's progress, logged
    assert re.fullmatch(r"device: (GPU \(.+\), )?CPU \(\d+ cores?\)(, no GPU)?", progress[0])
    assert "held-out test: 16 images x 8 view(s)" in progress
    assert f"export: {tmp_path / 'models' / 'tiny'} (SavedModel averaging 8 view(s))" in progress
    assert re.fullmatch(r"exported .*tiny in \d+\.\d min \(export \d+ s\)", progress[-1])


def test_training_variables_made_before_fit_trace_the_step_once_and_change_nothing_else(step_traces):
    import keras
    import tensorflow as tf

    rng = np.random.default_rng(0)
    images, labels = rng.uniform(0, 255, (16, 8, 8, 3)).astype("float32"), rng.integers(0, 4, 16)
    data = tf.data.Dataset.from_tensor_slices((images, labels)).batch(4).repeat()

    def trained(prepare):
        keras.utils.set_random_seed(0)
        inputs = keras.Input((None, None, 3))
        features = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(inputs))
        model = keras.Model(inputs, keras.layers.Dense(4, activation="softmax")(features))
        compile_model(model, 1e-2)
        if prepare:
            create_training_variables(model, images[:2], labels[:2])
            assert model.optimizer.built and len(model.optimizer.variables) >= 2 * len(model.trainable_variables)
        step_traces.clear()
        history = model.fit(data, epochs=2, steps_per_epoch=3, verbose=0, shuffle=False).history
        return len(step_traces), history, [np.asarray(w) for w in model.weights]

    plain_traces, plain_history, plain_weights = trained(prepare=False)
    traces_after, history, weights = trained(prepare=True)
    assert (plain_traces, traces_after) == (2, 1)  # Keras alone traces the step twice: it makes variables in the first
    assert history == plain_history  # the zero batch left no trace in the logged loss and accuracy
    for a, b in zip(weights, plain_weights, strict=True):
        np.testing.assert_array_equal(a, b)


def test_fit_stage_traces_the_step_once_with_the_parameter_head_and_no_strategy(step_traces):
    """`fit_stage` makes the variables itself, from the dataset's element spec: dict targets (probabilities and the
    head's packed parameters) under the default strategy, as every CPU `blurnet fit` stage trains."""
    import keras
    import tensorflow as tf

    from blurnet.parameter_head import PARAMETERS, PROBABILITIES

    rng = np.random.default_rng(0)
    images, labels = rng.uniform(0, 255, (16, 8, 8, 3)).astype("float32"), rng.integers(0, 4, 16)
    packed = np.concatenate([rng.normal(size=(16, 5)), rng.integers(0, 2, (16, 5))], axis=1).astype("float32")
    data = tf.data.Dataset.from_tensor_slices((images, {PROBABILITIES: labels, PARAMETERS: packed})).batch(4).repeat()
    keras.utils.set_random_seed(0)
    inputs = keras.Input((None, None, 3))
    features = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(inputs))
    model = keras.Model(inputs, {PROBABILITIES: keras.layers.Dense(4, activation="softmax", name=PROBABILITIES)(features),
                                 PARAMETERS: keras.layers.Dense(5, name=PARAMETERS)(features)})
    strategy = tf.distribute.get_strategy()  # the default one: what `fit` runs under without a GPU or --cpu-devices
    compile_model(model, 1e-2)
    config = FitConfig(weights=None, steps_per_epoch=3)
    fit_stage(model, config, (data, data.take(2)), strategy, callbacks=[], epochs=2)
    assert len(step_traces) == 1
    assert int(model.optimizer.iterations.numpy()) == 6  # 2 epochs x 3 steps: the zero batch trained nothing


def test_recipes_and_validation():
    cpu = FitConfig(weights=None).resolve("cpu")
    assert (cpu.image_size, cpu.batch_size, cpu.unfreeze_from, cpu.lr_finetune) == (64, 32, "all", 1e-3)
    assert (cpu.spectrum, cpu.highpass) == (True, False)
    gpu = FitConfig().resolve("gpu")
    assert (gpu.image_size, gpu.unfreeze_from, gpu.lr_finetune, gpu.spectrum, gpu.highpass) == (128, "pool3", 1e-4, True, False)
    assert FitConfig(image_size=96).resolve("cpu").image_size == 96  # explicit values win
    with pytest.raises(ValueError, match="16"):
        FitConfig(image_size=16).resolve("cpu")
    with pytest.raises(ValueError, match="highpass"):
        FitConfig(highpass=True).resolve("cpu")
    assert FitConfig(backbone="mobilenetv2").resolve("cpu").unfreeze_from == "all"  # no pool2..pool4 there
    assert FitConfig(spectrum=False).resolve("cpu").spectrum is False  # the plain DenseNet121
    with pytest.raises(ValueError, match="pool7"):
        FitConfig(unfreeze_from="pool7").resolve("cpu")
    # BatchNormalization: frozen with ImageNet weights, training from scratch or an export, unless told otherwise
    assert (gpu.freeze_batchnorm, cpu.freeze_batchnorm) == (True, False)
    assert FitConfig(weights=None, init_from="x", freeze_batchnorm=True).resolve("cpu").freeze_batchnorm is True
    with pytest.raises(ValueError, match="train-batchnorm needs --weights none, got weights='imagenet'"):
        FitConfig(freeze_batchnorm=False).resolve("cpu")
    for name in ("", ".", "..", "../x", "a/b", "a\\b"):  # the run and export folders are <dir>/<name>
        with pytest.raises(ValueError, match=re.escape(f"got {name!r}")):
            FitConfig(name=name).resolve("cpu")
    for key, value in (("lr_head", 0.0), ("lr_finetune", -1.0), ("lr_finetune", float("nan")), ("patience", -5),
                       ("parameter_loss_weight", float("nan")), ("min_sharpness", float("nan")),
                       ("min_sharpness", float("inf")), ("seed", -1), ("seed", 2**32)):
        with pytest.raises(ValueError, match=f"{key} must be .*got {value!r}"):
            FitConfig(**{key: value}).resolve("cpu")
    # Nothing to train and nothing to start from: refused (the export would hold random weights)
    with pytest.raises(ValueError, match="epochs_finetune is 0, epochs_head is 0 and there is no init_from: nothing would train"):
        FitConfig(weights=None, epochs_head=0, epochs_finetune=0).resolve("cpu")
    # weights none skips stage 1 whatever epochs_head says (the recipe's 1 here)
    with pytest.raises(ValueError, match="epochs_finetune is 0, stage 1 is skipped with weights none .* nothing would train"):
        FitConfig(weights=None, epochs_finetune=0).resolve("cpu")
    assert FitConfig(weights="imagenet", epochs_finetune=0).resolve("cpu").epochs_head == 1  # the head trains
    assert FitConfig(weights=None, init_from="x", epochs_head=0, epochs_finetune=0).resolve("cpu").epochs_finetune == 0


def test_init_from_an_export_of_the_same_photographs_keeps_its_seed():
    from blurnet.train import _check_split_seed

    bundled = {"fit_config": {"seed": 0, "data": None}}
    _check_split_seed(FitConfig(init_from="bundled", seed=0), bundled)
    _check_split_seed(FitConfig(init_from="bundled", seed=3, data="mine/"), bundled)  # other photographs: any seed
    _check_split_seed(FitConfig(init_from="keras-weights", seed=3), {"image_size": 96})  # no record of a split
    with pytest.raises(ValueError, match="'bundled' was trained on the same photographs with seed 0; seed 3 .* use --seed 0"):
        _check_split_seed(FitConfig(init_from="bundled", seed=3), bundled)


def test_fit_refuses_folders_it_would_destroy_before_it_trains(tmp_path, photo_folder, caplog):
    common = dict(data=str(photo_folder), weights=None, backbone="mobilenetv2", **TINY)
    models, runs = tmp_path / "models", tmp_path / "runs"
    (models / "mine").mkdir(parents=True)
    (models / "mine" / "notes.txt").write_text("not an export")
    (runs / "mine").mkdir(parents=True)
    (runs / "mine" / "keep.txt").write_text("not a run")
    with pytest.raises(ValueError, match=r"models/mine' exists and holds files but no saved_model.pb"):
        fit(FitConfig(name="mine", out=str(models), run_dir=str(runs), **common))
    onnx = models / "mine-onnx"  # what `blurnet export --format onnx` writes: blurnet.json, but no SavedModel
    onnx.mkdir()
    (onnx / "blurnet.json").write_text("{}")
    (onnx / "blurnet.onnx").write_bytes(b"network")
    with pytest.raises(ValueError, match=r"models/mine-onnx' exists and holds files but no saved_model.pb"):
        fit(FitConfig(name="mine-onnx", out=str(models), run_dir=str(tmp_path / "runs2"), **common))
    assert (onnx / "blurnet.onnx").read_bytes() == b"network"
    with pytest.raises(ValueError, match=r"runs/mine' holds files but is not a run folder \(no started_at\)"):
        fit(FitConfig(name="mine", out=str(tmp_path / "elsewhere"), run_dir=str(runs), **common))
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(ValueError, match=r"a_file' is not a folder"):  # an --out below a file: before any training
        fit(FitConfig(name="other", out=str(tmp_path / "a_file" / "sub"), run_dir=str(runs), **common))
    assert (models / "mine" / "notes.txt").read_text() == "not an export" and (runs / "mine" / "keep.txt").is_file()
    assert not (runs / "other" / "training_log.csv").exists()
    # The run folder and the export in one place (or one inside the other): the run would fill the export's folder
    for out, run_dir in ((tmp_path / "same", tmp_path / "same"), (tmp_path / "x", tmp_path / "x" / "both")):
        with pytest.raises(ValueError, match=r"the run folder \(--run-dir\) and the export \(--out\) would overlap"):
            fit(FitConfig(name="both", out=str(out), run_dir=str(run_dir), **common))
        assert not out.exists()


def test_a_new_run_that_cannot_start_keeps_the_earlier_run_of_its_folder(tmp_path, photo_folder):
    from blurnet.train import set_aside_folder

    runs = tmp_path / "runs"
    earlier = runs / "mine"
    (earlier / "backup").mkdir(parents=True)
    (earlier / "started_at").write_text("1000.5\n")
    (earlier / "best.weights.h5").write_bytes(b"weights of the earlier run")
    common = dict(weights=None, backbone="mobilenetv2", name="mine", out=str(tmp_path / "models"), run_dir=str(runs), **TINY)
    with pytest.raises(FileNotFoundError, match="photos-typo"):  # a mistyped --data: found while loading
        fit(FitConfig(data=str(tmp_path / "photos-typo"), **common))
    assert (earlier / "best.weights.h5").read_bytes() == b"weights of the earlier run"
    assert (earlier / "started_at").read_text() == "1000.5\n" and (earlier / "backup").is_dir()
    assert sorted(p.name for p in runs.iterdir()) == ["mine"]
    # a run killed while loading left the earlier one set aside: the next start puts it back first
    earlier.rename(set_aside_folder(earlier))
    earlier.mkdir()
    (earlier / "started_at").write_text("2000.0\n")
    with pytest.raises(FileNotFoundError, match="photos-typo"):
        fit(FitConfig(data=str(tmp_path / "photos-typo"), **common))
    assert (earlier / "best.weights.h5").read_bytes() == b"weights of the earlier run"
    assert sorted(p.name for p in runs.iterdir()) == ["mine"]
    fit(FitConfig(data=str(photo_folder), **common))  # a new run that starts replaces it
    assert sorted(p.name for p in runs.iterdir()) == ["mine"] and (earlier / "started_at").read_text() != "1000.5\n"
    assert (earlier / "best.weights.h5").read_bytes() != b"weights of the earlier run"


def test_a_run_folder_that_is_a_link_is_replaced_where_it_points(tmp_path, photo_folder):
    import os
    import time

    from blurnet.train import _prepare_run, discard_set_aside

    real = tmp_path / "bigdisk" / "mine"  # the run folder on another disk, linked from --run-dir
    real.mkdir(parents=True)
    (real / "started_at").write_text("1000.5\n")
    (real / "best.weights.h5").write_bytes(b"weights of the earlier run")
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "mine").symlink_to(real)
    config = FitConfig(data=str(photo_folder), weights=None, backbone="mobilenetv2", name="mine",
                       out=str(tmp_path / "models"), run_dir=str(runs), **TINY)
    _, run = _prepare_run(config, time.time())
    assert run.folder == real and (runs / "mine").is_symlink() and os.listdir(runs) == ["mine"]
    assert (tmp_path / "bigdisk" / "mine.replaced" / "best.weights.h5").read_bytes() == b"weights of the earlier run"
    discard_set_aside(run.folder)  # what fit does once the new run's data and model are built
    assert sorted(os.listdir(real.parent)) == ["mine"] and os.listdir(real) == ["started_at"]


def test_psf_families_reach_every_split_and_validation_draws_what_training_draws(photo_folder):
    for name, families in (("realistic", PsfFamilies()), ("classic", PsfFamilies.classic())):
        config = FitConfig(data=str(photo_folder), weights=None, psf_families=name, **TINY).resolve("cpu")
        pipeline = pipeline_config(config)
        assert pipeline.families == families and pipeline.image_size == 32 and pipeline.batch_size == 8
        data = load_data(config, pipeline)
        for maker in (data.train, data.val, data.test):
            assert maker.config.families == families
        # validation sees the camera steps and augmentation of training (JPEG, palettes, noise); the test stays plain
        assert data.val.camera == data.train.camera == CameraConfig() and data.val.augment == AugmentConfig()
        assert data.test.camera == CameraConfig.none() and data.test.augment == AugmentConfig.none()
        assert data.val.make_batch(0)[0].shape == (8, 32, 32, 3)
    with pytest.raises(ValueError, match="'wavy'"):
        FitConfig(weights=None, psf_families="wavy").resolve("cpu")


def test_generated_scenes_join_the_training_split_only(photo_folder, tmp_path):
    plain = FitConfig(data=str(photo_folder), weights=None, **TINY).resolve("cpu")
    config = dataclasses.replace(plain, generated_scenes=2)
    before, data = load_data(plain, pipeline_config(plain)), load_data(config, pipeline_config(config))
    assert data.train.photo_names == before.train.photo_names + ["dead-leaves-0", "dead-leaves-1"]
    assert data.val.photo_names == before.val.photo_names and data.test.photo_names == before.test.photo_names
    assert data.description.split("; val:")[0].endswith(", and 2 generated dead-leaves scenes")
    assert "dead-leaves-0" not in data.description  # counted, not listed
    assert data.train.make_batch(0)[0].shape == (8, 32, 32, 3)
    with pytest.raises(ValueError, match="generated_scenes must be >= 0, got -2"):
        FitConfig(weights=None, generated_scenes=-2).resolve("cpu")


def test_palette_share_sets_the_training_and_validation_palette_images(photo_folder, tmp_path):
    plain = FitConfig(data=str(photo_folder), weights=None, **TINY).resolve("cpu")
    config = dataclasses.replace(plain, palette_share=0.4)
    assert plain.palette_share == AugmentConfig().palette_probability == 0.05
    data = load_data(config, pipeline_config(config))
    assert data.train.augment == data.val.augment == AugmentConfig(palette_probability=0.4)
    assert data.test.augment == AugmentConfig.none()
    assert pipeline_config(config).camera_record()["palette_probability"] == 0.4  # what blurnet.json records
    # The share of training samples drawn as palette images: 0.4 of 2,000 draws, within 4 standard deviations.
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 255, (16, 16, 3)).astype(np.float32)
    drawn = [choose_format(image, rng, data.train.augment)[0] for _ in range(2000)]
    assert abs(drawn.count("palette") / 2000 - 0.4) < 4 * (0.4 * 0.6 / 2000) ** 0.5
    assert drawn.count("jpeg") / 2000 == pytest.approx(0.6, abs=0.05)
    for bad in (0.5, -0.1):  # 0.6 of the samples are JPEG: at most 0.4 are left for palettes
        with pytest.raises(ValueError, match=rf"palette share must be in \[0, 0.4\] .*got {bad}"):
            dataclasses.replace(plain, palette_share=bad).resolve("cpu")


def test_blur_ranges_widen_what_the_generated_samples_draw(photo_folder, tmp_path):
    plain = FitConfig(data=str(photo_folder), weights=None, **TINY).resolve("cpu")
    assert plain.blur_ranges is None and plain.ranges() == BlurRanges() == pipeline_config(plain).ranges
    config = dataclasses.replace(plain, psf_families="classic", blur_ranges={"motion_length": (5, 40), "noise_sigma": [0, 5]})
    wide = pipeline_config(config).ranges
    assert (wide.motion_length, wide.noise_sigma, wide.gaussian_sigma) == ((5.0, 40.0), (0.0, 5.0), BlurRanges().gaussian_sigma)
    data = load_data(config, pipeline_config(config))
    assert data.train.config.ranges == data.val.config.ranges == data.test.config.ranges == wide
    # The training samples reach into the widened part (straight streaks: the label is the drawn length).
    lengths = np.concatenate([params[labels == 2, 0] for _, labels, params in (data.train.make_batch(i) for i in range(60))])
    assert lengths.min() >= 5.0 and lengths.max() <= 40.0 and np.quantile(lengths, 0.9) > 21.0, np.quantile(lengths, [0, 0.9, 1])
    for bad, message in (({"motion_length": (30, 20)}, r"motion_length range \(30.0, 20.0\) is empty"),
                         ({"blur": (1, 2)}, r"Unknown blur range keys \['blur'\]"),
                         ({"defocus_radius": 7}, r"blur_ranges\['defocus_radius'\] must be two numbers \(low, high\), got 7"),
                         ({"noise_sigma": ("a", 1)}, r"blur_ranges\['noise_sigma'\] must be two numbers \(low, high\), got \('a', 1\)")):
        with pytest.raises(ValueError, match=message):
            dataclasses.replace(plain, blur_ranges=bad).resolve("cpu")


def test_a_re_export_keeps_the_blur_ranges_its_weights_trained_with():
    from blurnet.train import _reexport_ranges

    wide = {**BlurRanges().to_dict(), "motion_length": [5.0, 40.0]}
    config = FitConfig(init_from="source", epochs_finetune=0)
    assert _reexport_ranges(config, {"blur_ranges": wide}).ranges().motion_length == (5.0, 40.0)
    assert _reexport_ranges(config, {}).blur_ranges is None  # recorded before ranges were recorded: the defaults
    assert _reexport_ranges(dataclasses.replace(config, blur_ranges={"motion_length": (5, 40)}), {"blur_ranges": wide})
    with pytest.raises(ValueError, match=r"keeps the blur ranges its weights were trained with, .*'motion_length': \[5.0, 40.0\].*"
                                         r"got blur_ranges=\{'motion_length': \(5, 60\)\}"):
        _reexport_ranges(dataclasses.replace(config, blur_ranges={"motion_length": (5, 60)}), {"blur_ranges": wide})


@pytest.mark.parametrize("key, value", [("generated_scenes", 2), ("palette_share", 0.4), ("blur_ranges", {"motion_length": (5, 40)}),
                                        ("psf_families", "classic"), ("min_sharpness", 0.01)])
def test_a_labelled_folder_refuses_settings_of_generated_samples(tmp_path, key, value):
    from blurnet.train import GENERATED_ONLY

    assert key in GENERATED_ONLY
    (tmp_path / "labelled" / "sharp").mkdir(parents=True)
    config = dataclasses.replace(FitConfig(data=str(tmp_path / "labelled"), weights=None, **TINY).resolve("cpu"), **{key: value})
    default = getattr(FitConfig, key)
    with pytest.raises(ValueError, match=re.escape(f"{key} is a setting of generated samples; a labelled folder "
                                                   f"({tmp_path / 'labelled'}) trains on its images as they are: "
                                                   f"leave {key} at {default!r}, got {value!r}.")):
        load_data(config, pipeline_config(config))


def test_estimate_counts_held_out_views_and_export():
    quick_start = FitConfig(weights=None).resolve("cpu")  # the README's first command
    parts = estimate_parts(quick_start, "cpu")
    rate = 19.0 * (128 / 64) ** 1.5  # training images/s at 64 px on 2 CPU cores
    assert parts == pytest.approx({
        "build": 45.0,  # one stage (from random weights)
        "train": 10 * 60 * 32 / rate,
        "validate": 10 * 256 / (3 * rate),
        "held_out": 512 * 8 / (2 * rate),  # 8 views of each held-out image
        "export": 15.0,
    })
    assert estimate_minutes(quick_start, "cpu") == pytest.approx(sum(parts.values()) / 60)
    assert 0.7 * 543 < sum(parts.values()) < 1.3 * 543  # the quick start measured 9 min 3 s
    one_view = estimate_parts(dataclasses.replace(quick_start, test_time_views=1, test_images=500), "cpu")
    assert one_view["held_out"] == pytest.approx(512 / (2 * rate))  # whole batches of 32, one view
    pretrained = estimate_parts(FitConfig().resolve("gpu"), "gpu")
    assert pretrained["build"] == 90.0 and pretrained["export"] == 15.0  # head and fine-tune stages


def test_fit_logs_one_line_per_epoch_when_output_is_not_a_terminal():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    assert fit_verbosity(io.StringIO()) == 2
    assert fit_verbosity(Terminal()) == 1


@pytest.mark.slow
def test_fit_on_a_labelled_folder(tmp_path, caplog):
    import cv2

    from data_pipeline.classes import CLASS_NAMES
    from conftest import textured_image

    for c, name in enumerate(CLASS_NAMES):
        (tmp_path / "data" / name).mkdir(parents=True)
        for i in range(5):
            cv2.imwrite(str(tmp_path / "data" / name / f"{i}.png"), textured_image(10 * c + i, 48, 56))
    config = FitConfig(data=str(tmp_path / "data"), out=str(tmp_path / "models"), name="lab", weights=None,
                       backbone="mobilenetv2", run_dir=str(tmp_path / "runs"), resume=True, **{**TINY, "epochs_finetune": 1})
    with caplog.at_level(logging.WARNING, logger="blurnet"):
        meta = json.loads((fit(config) / "blurnet.json").read_text())
    # --resume with no run folder to resume says so, then trains a new run.
    assert f"--resume: no run folder {str(tmp_path / 'runs' / 'lab')!r}; starting a new run" in caplog.text
    assert meta["training_data"].startswith("labelled folder") and "20 images" in meta["training_data"]
    assert meta["held_out"]["n_images"] == 16
    assert meta["held_out"]["n_files"] == {name: 1 for name in CLASS_NAMES}  # a test file of each class
    assert meta["psf_families"] is None and meta["camera"] is None  # its images were used as they are


def test_best_logged_value_survives_a_resume(tmp_path):
    from blurnet.callbacks import best_logged

    assert best_logged(tmp_path / "missing.csv") is None
    log = tmp_path / "log.csv"
    log.write_text("epoch,accuracy,val_accuracy\n0,0.3,0.25\n1,0.5,0.625\n2,0.6,0.5\n")
    assert best_logged(log) == 0.625


def test_a_labelled_folder_with_a_stray_subfolder_is_refused_by_name_not_read_as_sharp_photographs(tmp_path):
    import cv2

    from conftest import textured_image
    from data_pipeline.labelled import is_labelled_folder, list_labelled_files

    for name in ("sharp", "motion", ".ipynb_checkpoints", "blurry"):
        (tmp_path / "d" / name).mkdir(parents=True)
        cv2.imwrite(str(tmp_path / "d" / name / "0.png"), textured_image(0, 40, 40))
    assert is_labelled_folder(tmp_path / "d")
    with pytest.raises(ValueError, match=r"unknown class folder\(s\) 'blurry'; allowed names are sharp, gaussian"):
        fit(FitConfig(data=str(tmp_path / "d"), weights=None, run_dir=str(tmp_path / "runs"), **TINY))
    (tmp_path / "d" / "blurry").rename(tmp_path / "d" / "gaussian")
    items, empty = list_labelled_files(tmp_path / "d")  # the hidden folder is no class and no error
    assert [(p.parent.name, label) for p, label in items] == [("sharp", 0), ("gaussian", 1), ("motion", 2)] and empty == ["defocus"]
    (tmp_path / "photos" / "holiday").mkdir(parents=True)
    (tmp_path / "photos" / ".sharp").mkdir()
    assert not is_labelled_folder(tmp_path / "photos") and not is_labelled_folder(tmp_path / "missing")


def test_a_labelled_folder_is_split_by_file_within_each_class():
    from data_pipeline.labelled import split_labelled

    labels = np.array([0] * 25 + [1] * 3 + [3] * 2)  # sharp 25, gaussian 3, no motion, defocus 2
    parts = split_labelled(labels, seed=7)
    assert sorted(np.concatenate(list(parts.values())).tolist()) == list(range(30))  # every file once
    counts = {split: np.bincount(labels[idx], minlength=4).tolist() for split, idx in parts.items()}
    assert counts == {"test": [2, 1, 0, 0], "val": [2, 1, 0, 0], "train": [21, 1, 0, 2]}  # defocus: too few to hold out
    again, other = split_labelled(labels, seed=7), split_labelled(labels, seed=8)
    assert all(np.array_equal(parts[k], again[k]) for k in parts)
    assert not np.array_equal(parts["test"], other["test"])
    with pytest.raises(ValueError, match=r"too few labelled images to split into train, val and test: 4 \(sharp 2, motion 2\)"):
        split_labelled(np.array([0, 0, 2, 2]), seed=0)
    # its own random stream: not default_rng(seed)'s, which draws training batch 0
    one_class = split_labelled(np.zeros(100, int), seed=7)
    assert one_class["test"].tolist() != sorted(np.random.default_rng(7).permutation(100)[:10].tolist())


def test_labelled_images_smaller_than_the_crop_are_named_with_their_size():
    from data_pipeline.labelled import LabelledBatchMaker

    images = [np.zeros((40, 40, 3), np.uint8), np.zeros((20, 50, 3), np.uint8), np.zeros((48, 30, 3), np.uint8)]
    with pytest.raises(ValueError, match=r"2 labelled images are smaller than image_size=32: #1 20x50, #2 48x30\.$"):
        LabelledBatchMaker(images, np.zeros(3, int), 32, 4, seed=0)


def test_too_few_labelled_images(tmp_path):
    import cv2

    from conftest import textured_image

    (tmp_path / "d" / "sharp").mkdir(parents=True)
    for i in range(2):
        cv2.imwrite(str(tmp_path / "d" / "sharp" / f"{i}.png"), textured_image(i, 40, 40))
    with pytest.raises(ValueError, match="too few labelled images.*2"):
        fit(FitConfig(data=str(tmp_path / "d"), weights=None, run_dir=str(tmp_path / "runs"), **TINY))


def test_a_fine_tune_never_exports_over_the_model_it_starts_from(tmp_path, photo_folder, source):
    import shutil

    models = tmp_path / "models"
    start = Path(shutil.copytree(source[1], models / "start"))
    before = {p.name: p.read_bytes() for p in start.rglob("*") if p.is_file()}
    common = dict(data=str(photo_folder), out=str(models), weights=None, backbone="mobilenetv2", init_from=str(start),
                  run_dir=str(tmp_path / "runs"), **{**TINY, "epochs_head": 0, "image_size": None})
    for name, out in (("start", models), ("inner", start)):  # the same folder, or a folder inside it
        with pytest.raises(ValueError, match=r"the export \(--out, --name\) and --init-from would overlap"):
            fit(FitConfig(name=name, **{**common, "out": str(out)}))
    assert {p.name: p.read_bytes() for p in start.rglob("*") if p.is_file()} == before
    assert not (tmp_path / "runs").exists()  # refused before the run folder was made


@pytest.mark.slow
def test_init_from_with_no_epochs_re_exports_with_other_views_and_keeps_the_history(tmp_path, photo_folder, source):
    import shutil

    from blurnet.export import model_from_export

    common = dict(data=str(photo_folder), out=str(tmp_path / "models"), weights=None, backbone="mobilenetv2",
                  run_dir=str(tmp_path / "runs"), **{**TINY, "epochs_head": 0})
    source = Path(shutil.copytree(source[1], tmp_path / "source"))  # its blurnet.json is edited below
    again = fit(FitConfig(name="again", init_from=str(source), test_time_views=4,
                          **{**common, "epochs_finetune": 0, "image_size": None}))  # crop size from the export
    meta, source_meta = (json.loads((f / "blurnet.json").read_text()) for f in (again, source))
    assert (meta["test_time_views"], source_meta["test_time_views"]) == (4, 1)
    assert meta["tile_size"] == meta["image_size"] == 32  # large inputs answered in tiles of the training size
    assert meta["weights"] == "none" and meta["init_from"] == str(source)  # the source trained from scratch
    assert meta["started_from"]["folder"] == str(source)
    assert meta["started_from"]["fit_config"]["epochs_finetune"] == 2  # the run that trained the weights
    # What the weights were trained on is the source's data description, not this command's defaults.
    assert meta["generated_scenes"] == source_meta["generated_scenes"] == 0
    edited = {**source_meta, "camera": {"palette_probability": 0.0}, "psf_families": None, "generated_scenes": 7,
              "training_data": "the photographs the source was trained on",
              "blur_ranges": {**BlurRanges().to_dict(), "motion_length": [5.0, 30.0]}}
    (source / "blurnet.json").write_text(json.dumps(edited))
    third = fit(FitConfig(name="third", init_from=str(source), **{**common, "epochs_finetune": 0, "image_size": None}))
    third_meta = json.loads((third / "blurnet.json").read_text())
    assert third_meta["camera"] == {"palette_probability": 0.0} and third_meta["psf_families"] is None
    assert third_meta["generated_scenes"] == 7 and third_meta["blur_ranges"]["motion_length"] == [5.0, 30.0]
    assert third_meta["training_data"] == "the photographs the source was trained on"
    assert third_meta["held_out_data"].startswith(f"photographs in {photo_folder}")  # where its held-out figures come from
    assert meta["held_out"]["n_images"] == 16 and np.array(meta["held_out"]["confusion_matrix"]).sum() == 16
    assert (again / "training_log.csv").read_text() == (source / "training_log.csv").read_text()
    a, b = (model_from_export(f) for f in (source, again))
    for wa, wb in zip(a.weights, b.weights):
        np.testing.assert_array_equal(np.asarray(wa), np.asarray(wb))  # nothing trained


@pytest.mark.slow
def test_finetune_from_an_export_keeps_or_trains_the_batchnorm_statistics(tmp_path, photo_folder, source):
    from blurnet.export import model_from_export

    common = dict(data=str(photo_folder), out=str(tmp_path / "models"), weights=None, backbone="mobilenetv2",
                  run_dir=str(tmp_path / "runs"), test_time_views=1, parameter_head=False, **{**TINY, "epochs_head": 0})
    source = source[1]
    frozen = fit(FitConfig(name="frozen", init_from=str(source), freeze_batchnorm=True, **common))
    trained = fit(FitConfig(name="trained", init_from=str(source), **common))  # the default from an export
    weights = {name: {w.path: np.asarray(w) for w in model_from_export(f).weights}
               for name, f in (("source", source), ("frozen", frozen), ("trained", trained))}
    moving = [p for p in weights["source"] if p.endswith(("moving_mean", "moving_variance"))]
    kernels = [p for p in weights["source"] if p.endswith("kernel")]
    assert len(moving) > 100 and kernels
    def changed(name, paths):
        return sum(not np.array_equal(weights["source"][p], weights[name][p]) for p in paths)
    assert changed("frozen", moving) == 0 and changed("frozen", kernels) > 0  # statistics kept, convolutions learn
    assert changed("trained", moving) == len(moving)  # every layer's statistics followed the new batches
    meta = json.loads((frozen / "blurnet.json").read_text())
    assert meta["fit_config"]["freeze_batchnorm"] is True


@pytest.mark.slow
def test_freeze_classifier_adds_a_trained_head_and_keeps_the_class_answers(tmp_path, photo_folder, source):
    from blurnet.export import ExportedModel, model_from_export
    from blurnet.parameter_head import is_head_layer
    from conftest import textured_image

    common = dict(data=str(photo_folder), out=str(tmp_path / "models"), weights=None, backbone="mobilenetv2",
                  run_dir=str(tmp_path / "runs"), test_time_views=1, **{**TINY, "epochs_head": 0})
    source = source[1]
    assert json.loads((source / "blurnet.json").read_text())["parameter_head"] is False
    with pytest.raises(ValueError, match="freeze_classifier .* needs init_from"):
        fit(FitConfig(name="bad", freeze_classifier=True, **common))
    headed = fit(FitConfig(name="headed", init_from=str(source), freeze_classifier=True, parameter_loss_weight=2.0,
                           psf_families="classic", **{**common, "epochs_finetune": 2, "image_size": None}))
    a, b = model_from_export(source), model_from_export(headed)
    by_name = {w.path: np.asarray(w) for w in b.weights}
    assert all(np.array_equal(np.asarray(w), by_name[w.path]) for w in a.weights)  # every classifier weight kept
    tiles = np.stack([textured_image(i, 32, 32) for i in range(6)]).astype("float32")
    np.testing.assert_array_equal(ExportedModel(source)(tiles).numpy(), ExportedModel(headed)(tiles).numpy())
    assert ExportedModel(headed).estimate_tiles(tiles).shape == (6, 5)
    meta = json.loads((headed / "blurnet.json").read_text())
    assert meta["parameter_head"] is True and meta["fit_config"]["freeze_classifier"] is True
    # The head learnt from classic shapes, the classifier (the source's weights) from the realistic families
    source_meta = json.loads((source / "blurnet.json").read_text())
    assert meta["psf_families"]["shake_fraction"] == 0.0 and source_meta["psf_families"]["shake_fraction"] == 0.5
    assert meta["classifier_data"] == {key: source_meta[key] for key in ("psf_families", "camera", "generated_scenes",
                                                                         "training_data")}
    assert "classifier_data" not in source_meta
    # The held-out figures are the source classifier's on this run's held-out images (classic shapes, not the
    # source's own realistic ones): evaluated again with the source export, the same accuracy and confusion matrix.
    from blurnet.train import evaluate_held_out

    again = FitConfig(**{**common, "image_size": 32, "psf_families": "classic"}).resolve("cpu")
    by_source = evaluate_held_out(model_from_export(source), load_data(again, pipeline_config(again)).test, again)
    assert (meta["held_out"]["accuracy"], meta["held_out"]["confusion_matrix"]) == (by_source["accuracy"], by_source["confusion_matrix"])
    assert set(meta["held_out"]["parameters"]) >= {"sigma_mae", "length_mae", "radius_mae"}
    rows = list(csv.DictReader(open(tmp_path / "runs" / "headed" / "training_log.csv")))
    assert len(rows) == 2 and all(float(r["val_parameters_loss"]) > 0 for r in rows)
    # `loss` is what trains: the head's weighted loss; the (frozen) class loss is logged beside it, outside `loss`
    assert all(float(r["loss"]) == pytest.approx(2.0 * float(r["parameters_loss"]), rel=1e-4) for r in rows)
    assert all(float(r["probabilities_loss"]) > 0.1 for r in rows)
    head = [w for w in b.weights if is_head_layer(w.path.split("/")[0])]
    assert len(head) == 2 * 10  # kernel and bias: 3 convolutions and a Dense in each of its two branches, hidden, output


def test_best_weights_keeps_the_lowest_loss_in_min_mode(tmp_path):
    import h5py

    from blurnet.callbacks import BestWeights, best_logged, saved_best

    log = tmp_path / "log.csv"
    log.write_text("epoch,val_parameters_loss\n0,0.3\n1,0.2\n2,0.25\n")
    assert best_logged(log, "val_parameters_loss", "min") == 0.2
    assert best_logged(log, "val_parameters_loss", "max") == 0.3
    saved = []
    best = BestWeights(tmp_path / "b.h5", "val_parameters_loss", initial_best=0.2, mode="min")
    best.set_model(type("M", (), {"save_weights": lambda self, path, overwrite=True: saved.append(h5py.File(path, "w").close())})())
    for epoch, value in enumerate([0.25, 0.19, 0.19, 0.1]):
        best.on_epoch_end(epoch, {"val_parameters_loss": value})
    assert len(saved) == 2 and best.best == -0.1  # 0.19 then 0.1; the worse and the equal ones are not saved
    assert saved_best(tmp_path / "b.h5", "val_parameters_loss") == pytest.approx(0.1)  # saved with the weights
    with pytest.raises(ValueError, match="mode must be 'max' or 'min', got 'lowest'"):
        BestWeights(tmp_path / "b.h5", mode="lowest")


def test_run_start_time_is_kept_across_resumes(tmp_path):
    from blurnet.train import run_start_time

    assert run_start_time(tmp_path, 1000.5) == 1000.5
    assert run_start_time(tmp_path, 2000.0) == 1000.5  # a resume keeps the first start
    assert (tmp_path / "started_at").read_text() == "1000.5\n"
    assert [p.name for p in tmp_path.iterdir()] == ["started_at"]  # no temporary file left


def test_resume_with_another_architecture_is_refused_by_name(tmp_path):
    from blurnet.model import create_model
    from blurnet.train import RESUME_KEEPS, check_run_architecture, weight_shapes_signature

    config = FitConfig(backbone="mobilenetv2", weights=None, parameter_head=True)
    model = create_model("mobilenetv2", weights=None, spectrum=True, parameter_head=True)
    check_run_architecture(tmp_path, config, model)
    signature = weight_shapes_signature(model)
    assert json.loads((tmp_path / "architecture.json").read_text()) == {
        "backbone": "mobilenetv2", "spectrum": True, "highpass": False, "parameter_head": True, "weight_shapes": signature,
        "psf_families": "realistic", "generated_scenes": 0, "palette_share": 0.05, "motion_softness": 0.5, "freeze_batchnorm": False,
        "blur_ranges": BlurRanges().to_dict(), "underexposure": [0.25, [0.25, 0.8]],
        **{key: getattr(config, key) for key in RESUME_KEEPS}}
    assert set(RESUME_KEEPS) >= {"data", "seed", "image_size", "batch_size", "lr_finetune", "init_from"}
    assert len(signature) == 16 and signature == weight_shapes_signature(create_model("mobilenetv2", weights=None, spectrum=True,
                                                                                      parameter_head=True))
    check_run_architecture(tmp_path, config, model)  # the same settings resume
    with pytest.raises(ValueError, match=r"parameter_head: run True, now False"):
        check_run_architecture(tmp_path, dataclasses.replace(config, parameter_head=False), model)
    with pytest.raises(ValueError, match=r"spectrum: run True, now False"):
        check_run_architecture(tmp_path, dataclasses.replace(config, spectrum=False), model)
    with pytest.raises(ValueError, match=r"psf_families: run 'realistic', now 'classic'"):
        check_run_architecture(tmp_path, dataclasses.replace(config, psf_families="classic"), model)
    with pytest.raises(ValueError, match=r"generated_scenes: run 0, now 20"):
        check_run_architecture(tmp_path, dataclasses.replace(config, generated_scenes=20), model)
    with pytest.raises(ValueError, match=r"palette_share: run 0.05, now 0.3"):
        check_run_architecture(tmp_path, dataclasses.replace(config, palette_share=0.3), model)
    with pytest.raises(ValueError, match=r"blur_ranges: run \{.*'motion_length': \[5.0, 21.0\].*\}, now \{.*'motion_length': \[5.0, 40.0\]"):
        check_run_architecture(tmp_path, dataclasses.replace(config, blur_ranges={"motion_length": (5, 40)}), model)
    with pytest.raises(ValueError, match=r"freeze_batchnorm: run False, now True"):
        check_run_architecture(tmp_path, dataclasses.replace(config, freeze_batchnorm=True), model)
    with pytest.raises(ValueError, match=r"seed: run 0, now 7, lr_finetune: run None, now 0.05"):
        check_run_architecture(tmp_path, dataclasses.replace(config, seed=7, lr_finetune=0.05), model)
    for key, value in (("epochs_head", 3), ("parameter_loss_weight", 2.0), ("mixed_precision", True)):
        with pytest.raises(ValueError, match=rf"{key}: run {getattr(config, key)!r}, now {value!r}"):
            check_run_architecture(tmp_path, dataclasses.replace(config, **{key: value}), model)
    check_run_architecture(tmp_path, dataclasses.replace(config, epochs_finetune=50, patience=3), model)  # longer: fine
    # The parameter head alone keeps every statistic: its runs resume with or without --freeze-batchnorm.
    head_alone = tmp_path / "head_alone"
    head_alone.mkdir()
    check_run_architecture(head_alone, dataclasses.replace(config, freeze_classifier=True, freeze_batchnorm=False), model)
    assert json.loads((head_alone / "architecture.json").read_text())["freeze_batchnorm"] is True
    check_run_architecture(head_alone, dataclasses.replace(config, freeze_classifier=True, freeze_batchnorm=True), model)
    with pytest.raises(ValueError, match=r"freeze_batchnorm: run True, now False"):
        check_run_architecture(head_alone, config, model)
    shutil.rmtree(head_alone)
    # The same settings, but the code now builds layers of other shapes (here: three more input channels).
    changed = create_model("mobilenetv2", weights=None, spectrum=True, parameter_head=True, highpass=True)
    with pytest.raises(ValueError, match=rf"weight_shapes: run '{signature}', now '[0-9a-f]{{16}}' \(the same settings, but layers"):
        check_run_architecture(tmp_path, config, changed)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["architecture.json"]
    # A run folder recorded before the fingerprint existed is checked on its other settings, then gets it.
    (tmp_path / "architecture.json").write_text(json.dumps({"backbone": "mobilenetv2", "spectrum": True, "highpass": False,
                                                            "parameter_head": True}))
    with pytest.raises(ValueError, match=r"spectrum: run True, now False"):
        check_run_architecture(tmp_path, dataclasses.replace(config, spectrum=False), model)
    with pytest.raises(ValueError, match=r"generated_scenes: run 0, now 5"):  # recorded before the option: none
        check_run_architecture(tmp_path, dataclasses.replace(config, generated_scenes=5), model)
    with pytest.raises(ValueError, match=r"palette_share: run 0.05, now 0.2"):  # recorded before the option: the default
        check_run_architecture(tmp_path, dataclasses.replace(config, palette_share=0.2), model)
    with pytest.raises(ValueError, match=r"blur_ranges: run"):  # recorded before the option: the defaults
        check_run_architecture(tmp_path, dataclasses.replace(config, blur_ranges={"noise_sigma": (0, 5)}), model)
    # A realistic run from before softened trails trained on pin-sharp ones: resuming it now would change its data.
    with pytest.raises(ValueError, match=r"motion_softness: run 0.0, now 0.5"):
        check_run_architecture(tmp_path, config, model)
    # Nor did it see underexposed crops: resuming it with them would change its data as well.
    with pytest.raises(ValueError, match=r"underexposure: run \[0.0, \[0.25, 0.8\]\], now \[0.25, \[0.25, 0.8\]\]"):
        check_run_architecture(tmp_path, dataclasses.replace(config, psf_families="classic"), model)
    old = json.loads((tmp_path / "architecture.json").read_text())
    (tmp_path / "architecture.json").write_text(json.dumps({**old, "underexposure": [0.25, [0.25, 0.8]]}))
    check_run_architecture(tmp_path, dataclasses.replace(config, psf_families="classic"), model)  # classic: never softened
    completed = json.loads((tmp_path / "architecture.json").read_text())
    assert completed["weight_shapes"] == signature and completed["generated_scenes"] == 0 and completed["palette_share"] == 0.05
    assert completed["motion_softness"] == 0.0 and completed["psf_families"] == "classic"
    with pytest.raises(ValueError, match=r"weight_shapes"):
        check_run_architecture(tmp_path, config, changed)


def _h5_arrays(path) -> list:
    """Every array in a Keras weights file, in the file's order."""
    import h5py

    arrays = []
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, item: arrays.append((name, item[()])) if isinstance(item, h5py.Dataset) else None)
    return arrays


@pytest.fixture
def op_determinism_restored():
    """`fit(deterministic=True)` turns on TensorFlow's op determinism for the process: off again afterwards."""
    from tensorflow.python.framework import config as tf_config  # disable_op_determinism has no public name

    was_enabled = tf_config.is_op_determinism_enabled()
    try:
        yield
    finally:
        if not was_enabled:
            tf_config.disable_op_determinism()


@pytest.mark.slow
def test_deterministic_fit_gives_bit_identical_weights_twice(tmp_path, source, op_determinism_restored):
    config, first_export, first_run = source
    second_export = fit(dataclasses.replace(config, name="second", out=str(tmp_path / "models"), run_dir=str(tmp_path / "runs")))
    runs = []
    for export, run in ((first_export, first_run), (second_export, tmp_path / "runs" / "second")):
        meta = json.loads((export / "blurnet.json").read_text())
        assert meta["fit_config"]["deterministic"] is True
        runs.append((meta, _h5_arrays(run / "final.weights.h5"), (run / "training_log.csv").read_text()))
    (first, first_weights, first_log), (second, second_weights, second_log) = runs
    assert first["held_out"]["accuracy"] == second["held_out"]["accuracy"]
    assert first["held_out"]["confusion_matrix"] == second["held_out"]["confusion_matrix"]
    assert np.array(first["held_out"]["confusion_matrix"]).sum() == 16
    assert first_log == second_log and first_log.count("\n") == 3  # every epoch's loss and accuracy, to the last digit
    assert len(first_weights) == len(second_weights) > 100
    for (name, a), (_, b) in zip(first_weights, second_weights):
        assert a.shape == b.shape and np.array_equal(a, b), name


def test_parameter_head_is_on_unless_nothing_would_train_it(tmp_path):
    from blurnet.train import resolve_parameter_head

    labelled = tmp_path / "labelled"
    for name in ("sharp", "motion"):
        (labelled / name).mkdir(parents=True)
    assert resolve_parameter_head(FitConfig(), None) is True
    assert resolve_parameter_head(FitConfig(data=str(labelled)), None) is False  # no known parameters to learn
    headless, headed = {"parameter_head": False}, {"parameter_head": True}
    assert resolve_parameter_head(FitConfig(init_from="x", weights=None, epochs_finetune=0), headless) is False  # re-export
    assert resolve_parameter_head(FitConfig(init_from="x", weights=None, epochs_finetune=0), headed) is True
    assert resolve_parameter_head(FitConfig(init_from="x", weights=None, epochs_finetune=3), headless) is True  # trained now
    assert resolve_parameter_head(FitConfig(parameter_head=False), None) is False
    with pytest.raises(ValueError, match="labelled folder"):
        resolve_parameter_head(FitConfig(data=str(labelled), parameter_head=True), None)
    with pytest.raises(ValueError, match="trains nothing"):
        resolve_parameter_head(FitConfig(init_from="x", weights=None, epochs_finetune=0, parameter_head=True), headless)


@pytest.mark.slow
def test_interrupted_fit_without_a_strategy_resumes_with_its_optimizer(tmp_path, photo_folder, monkeypatch):
    """`fit` under the default strategy (variables made before the first step), stopped after its second epoch as
    Ctrl-C stops it, then `fit(resume=True)`: the epochs continue and the optimizer's step counter with them."""
    import keras

    import blurnet.train as train
    from conftest import backup_optimizer_steps

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise KeyboardInterrupt

    from data_pipeline.batches import BlurBatchMaker

    drawn = []  # (stream, batch index) of every batch the training and validation sets make
    make_batch = BlurBatchMaker.make_batch
    monkeypatch.setattr(BlurBatchMaker, "make_batch", lambda self, index: drawn.append((self.stream, int(index)))
                        or make_batch(self, index))
    made = train.training_callbacks
    monkeypatch.setattr(train, "training_callbacks", lambda *args, **kwargs: [*made(*args, **kwargs), Interrupt()])
    steps, epochs = 2, 3
    config = FitConfig(data=str(photo_folder), out=str(tmp_path / "models"), name="resumed", run_dir=str(tmp_path / "runs"),
                       weights=None, backbone="mobilenetv2", test_time_views=1,
                       **{**TINY, "epochs_head": 0, "epochs_finetune": epochs, "steps_per_epoch": steps, "test_images": 8})
    with pytest.raises(KeyboardInterrupt):
        fit(config)
    assert not (tmp_path / "models" / "resumed").exists()
    assert min(i for stream, i in drawn if stream == "train") == 0
    monkeypatch.setattr(train, "training_callbacks", made)
    drawn.clear()
    fit(dataclasses.replace(config, resume=True))
    # The resumed third epoch trains on batches 4 and 5 (prefetching may draw a few more), not on the first epochs'
    assert min(i for stream, i in drawn if stream == "train") == 2 * steps
    rows = list(csv.DictReader((tmp_path / "models" / "resumed" / "training_log.csv").read_text().splitlines()))
    assert [int(r["epoch"]) for r in rows] == list(range(epochs))  # continued, not restarted
    assert backup_optimizer_steps(tmp_path / "runs" / "resumed") == epochs * steps  # 2 * steps had it restarted
