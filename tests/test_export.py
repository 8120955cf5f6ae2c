import json
import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

import blurnet.export
from blurnet.export import ExportedModel, NotAnExportError, export_model, model_from_export, read_metadata
from blurnet.model import create_model
from data_pipeline.classes import CLASS_NAMES, BlurRanges
from conftest import run_in_plain_tensorflow

META = {"classes": list(CLASS_NAMES), "image_size": 32, "blur_ranges": BlurRanges().to_dict(), "backbone": "densenet121",
        "weights": "none", "spectrum": True}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """MobileNetV2 with the spectral branch (as fit builds it), compiled and one step trained as `fit` leaves it
    (optimizer and metric state attached), exported over 8 views (fit's default), no tiles."""
    from blurnet.model import create_training_variables
    from blurnet.train import compile_model

    model = create_model("mobilenetv2", weights=None, spectrum=True)
    compile_model(model, 1e-3)
    images, labels = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32"), np.array([0, 3])
    create_training_variables(model, images, labels)
    model.train_on_batch(images, labels)
    assert int(model.optimizer.iterations.numpy()) == 1
    target = export_model(model, tmp_path_factory.mktemp("export") / "m", {**META, "backbone": "mobilenetv2"}, views=8)
    return model, target


def mean_over_views(model, images):
    """The model's probabilities averaged over the 8 flips/rotations, written out with numpy."""
    views = [v for k in range(4) for r in [np.rot90(images, k, axes=(1, 2))] for v in (r, r[:, :, ::-1])]
    return np.mean([np.asarray(model(np.ascontiguousarray(v), training=False)) for v in views], axis=0)


@pytest.mark.slow
def test_export_layout_and_metadata(exported):
    _, target = exported
    assert (target / "saved_model.pb").is_file() and not (target / "model.keras").exists()  # one copy of the weights
    meta = json.loads((target / "blurnet.json").read_text())
    assert meta["classes"] == list(CLASS_NAMES) and meta["image_size"] == 32 and meta["test_time_views"] == 8
    assert set(meta["versions"]) == {"tensorflow", "keras"}
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(blurnet.export.__file__).parent, capture_output=True, text=True)
    if head.returncode != 0:  # not a git checkout (or no git): nothing to record
        assert meta["git_commit"] is None
    else:  # the commit the export was made at: HEAD, or an ancestor of it when commits were made since
        assert re.fullmatch(r"[0-9a-f]{40}", meta["git_commit"]), meta["git_commit"]
        ancestor = subprocess.run(["git", "merge-base", "--is-ancestor", meta["git_commit"], "HEAD"], cwd=Path(blurnet.export.__file__).parent)
        assert ancestor.returncode == 0
    assert not [p for p in target.parent.iterdir() if p.name.startswith(".")]  # no temporary folders left


@pytest.mark.slow
def test_model_from_export_rebuilds_the_same_model_from_the_one_copy_of_its_weights(tmp_path_factory):
    model = create_model(weights=None)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.optimizer.build(model.trainable_variables)  # what fit does first: the optimizer now holds two slots per weight
    assert len(model.optimizer.variables) > 2 * len(model.trainable_variables)
    target = export_model(model, tmp_path_factory.mktemp("compiled") / "m", {**META, "spectrum": False})
    assert sorted(p.name for p in target.iterdir() if p.name != "assets") == ["blurnet.json", "fingerprint.pb", "saved_model.pb", "variables"]
    weights_bytes = sum(np.asarray(w).nbytes for w in model.weights)
    variables = sum(p.stat().st_size for p in (target / "variables").iterdir())
    assert weights_bytes < variables < 1.2 * weights_bytes  # every weight once, no optimizer state
    rebuilt = model_from_export(target)
    for a, b in zip(rebuilt.weights, model.weights, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert getattr(rebuilt, "optimizer", None) is None
    x = np.random.default_rng(1).uniform(0, 255, (2, 40, 40, 3)).astype("float32")
    np.testing.assert_allclose(np.asarray(rebuilt(x)), np.asarray(model(x)), atol=1e-5)
    served = ExportedModel(target)
    assert served.views == 1  # export_model's default: the plain single pass
    np.testing.assert_allclose(np.asarray(served(x)), np.asarray(model(x)), atol=1e-5)


@pytest.mark.slow
def test_savedmodel_loads_in_plain_tensorflow(exported, tmp_path):
    model, target = exported
    rng = np.random.default_rng(0)
    a = rng.uniform(0, 255, (2, 48, 48, 3)).astype("float32")
    b = rng.uniform(0, 255, (3, 64, 80, 3)).astype("float32")
    np.save(tmp_path / "a.npy", a)
    np.save(tmp_path / "b.npy", b)
    stdout = run_in_plain_tensorflow(f"""
        m = tf.saved_model.load({str(target)!r})
        outs = [m.serve(tf.constant(np.load("a.npy"))).numpy(),
                m.signatures["serving_default"](image=tf.constant(np.load("b.npy")))]
        outs[1] = list(outs[1].values())[0].numpy()
        np.save("out_a.npy", outs[0]); np.save("out_b.npy", outs[1])
        stored = tf.train.list_variables({str(target / "variables" / "variables")!r})
        print("values:", sum(int(np.prod(shape)) for name, shape in stored if "OBJECT_GRAPH" not in name))
    """, cwd=tmp_path)
    # The network's weights alone: no optimizer slots or metric state came along from training.
    assert f"values: {model.count_params()}" in stdout
    out_a, out_b = np.load(tmp_path / "out_a.npy"), np.load(tmp_path / "out_b.npy")
    assert out_a.shape == (2, 4) and out_b.shape == (3, 4) and out_a.dtype == np.float32
    np.testing.assert_allclose(out_a.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(out_b.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(out_a, mean_over_views(model, a), atol=1e-4)
    np.testing.assert_allclose(out_b, mean_over_views(model, b), atol=1e-4)  # 64 x 80: transposed views too


@pytest.mark.slow
def test_failed_export_keeps_the_old_model(exported, monkeypatch):
    model, target = exported
    before = (target / "blurnet.json").read_text()
    import blurnet.export as export

    def explode(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(export, "_write_export", explode)
    with pytest.raises(RuntimeError, match="disk full"):
        export_model(model, target, {**META, "image_size": 99})
    assert (target / "blurnet.json").read_text() == before
    assert (target / "saved_model.pb").is_file()
    assert not [p for p in target.parent.iterdir() if p.name.startswith(".")]


@pytest.mark.slow
def test_exported_model_wrapper_and_bad_folders(exported, tmp_path):
    model, target = exported
    loaded = ExportedModel(target)
    assert loaded.image_size == 32 and loaded.name == "m" and loaded.views == 8
    assert loaded.num_parameters == model.count_params()
    assert np.asarray(loaded(np.zeros((1, 40, 40, 3), "float32"))).shape == (1, 4)
    with pytest.raises(ValueError, match="'m' has no parameter head"):
        loaded.estimate(np.zeros((1, 40, 40, 3), "float32"))
    with pytest.raises(NotAnExportError, match=r"does not exist\.$"):
        read_metadata(tmp_path / "missing")
    # the bundled model's place, missing as after a plain `pip install .`: says where the model comes from
    with pytest.raises(NotAnExportError, match=r"does not exist\. The bundled model comes with blurnet's source tree"):
        read_metadata(tmp_path / "site-packages" / "saved_models" / "blurnet-densenet121")
    (tmp_path / "plain").mkdir()
    with pytest.raises(NotAnExportError, match="expected a TensorFlow SavedModel"):
        read_metadata(tmp_path / "plain")


@pytest.mark.slow
def test_load_export_weights_copies_every_weight_and_checks_the_architecture(exported):
    from blurnet.export import load_export_weights

    model, target = exported
    fresh = create_model("mobilenetv2", weights=None, spectrum=True)
    x = np.random.default_rng(2).uniform(0, 255, (2, 48, 48, 3)).astype("float32")
    assert not np.allclose(np.asarray(fresh(x)), np.asarray(model(x)), atol=1e-4)  # a different initialisation
    meta = load_export_weights(fresh, target)
    assert meta["backbone"] == "mobilenetv2"
    np.testing.assert_allclose(np.asarray(fresh(x)), np.asarray(model(x)), atol=1e-5)
    with pytest.raises(ValueError, match="'spectrum': True.*'spectrum': False"):
        load_export_weights(create_model("mobilenetv2", weights=None, spectrum=False), target)


def test_init_from_needs_weights_none():
    from blurnet.config import FitConfig

    with pytest.raises(ValueError, match="init-from.*'imagenet'"):
        FitConfig(init_from="saved_models/x").resolve("cpu")
    assert FitConfig(init_from="saved_models/x", weights=None).resolve("cpu").init_from == "saved_models/x"


def test_export_answers_large_inputs_tile_by_tile(tmp_path):
    import keras

    from blurnet.tiling import answer_by_tiles

    keras.utils.set_random_seed(0)
    inputs = keras.Input(shape=(None, None, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu")(keras.layers.Rescaling(1 / 255)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(4, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x)))
    target = export_model(model, tmp_path / "tiled", META, tile=32)
    assert read_metadata(target)["tile_size"] == 32
    loaded = ExportedModel(target)
    rng = np.random.default_rng(4)
    small, big = (rng.uniform(0, 255, shape).astype("float32") for shape in [(2, 32, 30, 3), (2, 70, 100, 3)])
    np.testing.assert_allclose(np.asarray(loaded(small)), np.asarray(model(small)), atol=1e-5)  # one tile: whole
    np.testing.assert_allclose(np.asarray(loaded(big)), answer_by_tiles(model, big, 32).numpy(), atol=1e-5)
    assert np.abs(np.asarray(loaded(big)) - np.asarray(model(big))).max() > 1e-4  # not the whole-image answer
    assert read_metadata(export_model(model, tmp_path / "whole", META))["tile_size"] is None
    with pytest.raises(ValueError, match="16"):
        export_model(model, tmp_path / "bad", META, tile=16)


@pytest.mark.slow
def test_the_savedmodel_holds_the_network_graph_once_for_all_views_and_endpoints(head_export, tmp_path):
    from tensorflow.core.protobuf import saved_model_pb2

    model, eight_views = head_export  # exported over 8 views in 32 px tiles
    meta = read_metadata(eight_views)
    assert (meta["test_time_views"], meta["tile_size"]) == (8, 32)
    sizes, convolutions = {}, {}
    for views in (1, 8):
        folder = export_model(model, tmp_path / "views1", meta, views=1, tile=32) if views == 1 else eight_views
        sizes[views] = (folder / "saved_model.pb").stat().st_size
        saved = saved_model_pb2.SavedModel.FromString((folder / "saved_model.pb").read_bytes())
        library = saved.meta_graphs[0].graph_def.library.function
        convolutions[views] = sum(node.op == "Conv2D" for f in library for node in f.node_def)
    # serve and estimate over 8 views call one traced network: as many convolutions in the graph as with 1 view
    # (inlined, 8 views and 2 endpoints held the network 16 times).
    assert convolutions[8] == convolutions[1], convolutions
    assert sizes[8] < 1.2 * sizes[1], sizes


def test_weights_origin_follows_the_exports_a_model_was_fine_tuned_from():
    from blurnet.loaded_model import weights_origin

    bundled = read_metadata(blurnet.export.default_model_dir())  # fine-tuned six times from a model trained from scratch
    assert bundled["weights"] == weights_origin(bundled) == "none"  # as the SPEC asks: imagenet, a file or none
    assert bundled["init_from"] == "saved_models/blurnet-densenet121"  # what it continued from, beside the origin
    level, depth = bundled, 0
    while isinstance(level.get("started_from"), dict):  # every stage names its origin and what it started from
        level, depth = level["started_from"], depth + 1
        assert level["weights"] == "none" and (level.get("init_from") is not None) == ("--init-from" in level["command"])
    assert depth == 6
    chain = {"weights": "export:b", "started_from": {"weights": "export:a", "started_from": {"weights": "imagenet"}}}
    assert weights_origin(chain) == "imagenet" and weights_origin({"weights": "file:w.h5"}) == "file:w.h5"
    assert weights_origin({"weights": "export:old"}) == "export:old"  # its source was not recorded


def test_an_export_replaces_only_a_blurnet_export_and_keeps_what_it_does_not_write(tmp_path):
    import keras

    inputs = keras.Input(shape=(None, None, 3))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(keras.layers.Rescaling(1 / 255)(inputs)))
    model = keras.Model(inputs, keras.layers.Dense(4, activation="softmax")(x))
    foreign = tmp_path / "theirs"  # another program's SavedModel: no blurnet.json
    (foreign / "variables").mkdir(parents=True)
    (foreign / "saved_model.pb").write_bytes(b"their graph")
    with pytest.raises(ValueError, match=r"theirs' exists and holds files but no blurnet.json"):
        export_model(model, foreign, META)
    assert (foreign / "saved_model.pb").read_bytes() == b"their graph" and sorted(os.listdir(foreign)) == ["saved_model.pb", "variables"]
    target = export_model(model, tmp_path / "mine", {**META, "image_size": 32}, extra_files=[])
    (target / "README.md").write_text("# model card")  # what the export does not write: kept when it is replaced
    (target / "notes").mkdir()
    (target / "notes" / "a.txt").write_text("mine")
    (target / "training_log.csv").write_text("epoch\n0\n")  # a training log of the earlier model: not this one's
    export_model(model, target, {**META, "image_size": 48})
    assert read_metadata(target)["image_size"] == 48 and (target / "README.md").read_text() == "# model card"
    assert (target / "notes" / "a.txt").read_text() == "mine" and not (target / "training_log.csv").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine", "theirs"]  # no temporary folder left
