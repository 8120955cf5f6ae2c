"""`blurnet export --format`: the plain network of an export in other formats, and the bundled model's one copy of its weights."""
import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from blurnet.cli import main
from blurnet.export import ExportedModel, NotAnExportError, default_model_dir, export_model, load_export_weights, model_from_export
from blurnet.model import create_model
from blurnet.views import average_over_views
from data_pipeline.classes import CLASS_NAMES, BlurRanges

META = {"classes": list(CLASS_NAMES), "image_size": 32, "blur_ranges": BlurRanges().to_dict(), "backbone": "mobilenetv2",
        "weights": "none", "spectrum": True}


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory):
    model = create_model("mobilenetv2", weights=None, spectrum=True)
    return model, export_model(model, tmp_path_factory.mktemp("export") / "tiny", META, views=8, tile=32)


@pytest.mark.slow
def test_keras_format_holds_the_export_weights_and_starts_train_keras(tiny_export, tmp_path):
    import keras

    from blurnet.train_keras import load_starting_weights

    model, folder = tiny_export
    done = CliRunner().invoke(main, ["export", str(folder), "--format", "keras", "--out", str(tmp_path / "k")])
    assert done.exit_code == 0, done.output
    assert sorted(p.name for p in (tmp_path / "k").iterdir()) == ["blurnet.json", "model.keras"]
    assert json.loads((tmp_path / "k" / "blurnet.json").read_text()) == json.loads((folder / "blurnet.json").read_text())
    for a, b in zip(keras.saving.load_model(tmp_path / "k" / "model.keras").weights, model.weights, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    fresh = create_model("mobilenetv2", weights=None, spectrum=True)
    load_starting_weights(fresh, tmp_path / "k")
    for a, b in zip(fresh.weights, model.weights, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    with pytest.raises(ValueError, match=f"blurnet export {folder} --format keras"):
        load_starting_weights(fresh, folder)  # a SavedModel needs TensorFlow to read: made into model.keras first


def test_export_command_refuses_a_folder_that_is_not_an_export(tmp_path):
    done = CliRunner().invoke(main, ["export", str(tmp_path), "--format", "keras"])
    assert done.exit_code == 1 and "has no saved_model.pb" in done.output
    assert not tmp_path.with_name(f"{tmp_path.name}-keras").exists()


@pytest.mark.slow
def test_weights_that_do_not_fit_the_declared_architecture_are_refused(tiny_export, tmp_path):
    _, folder = tiny_export
    lying = tmp_path / "lying"
    shutil.copytree(folder, lying)
    meta = json.loads((lying / "blurnet.json").read_text())
    (lying / "blurnet.json").write_text(json.dumps({**meta, "backbone": "densenet121"}))
    with pytest.raises(NotAnExportError, match="SavedModel's weights do not fit"):
        load_export_weights(create_model("densenet121", weights=None, spectrum=True), lying)


@pytest.mark.slow
def test_bundled_model_has_one_copy_of_its_weights_and_fine_tunes_from_it():
    folder = default_model_dir()
    assert not (folder / "model.keras").exists()
    size_mb = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20
    assert size_mb <= 40, size_mb
    model = model_from_export(folder)  # what fit --init-from builds
    side = ExportedModel(folder).image_size
    x = np.random.default_rng(3).uniform(0, 255, (3, side, side, 3)).astype("float32")
    served = np.asarray(ExportedModel(folder)(x))
    rebuilt = np.asarray(average_over_views(lambda v: model(v, training=False), x, ExportedModel(folder).views))
    np.testing.assert_allclose(rebuilt, served, atol=1e-4)
    assert rebuilt.argmax(axis=1).tolist() == served.argmax(axis=1).tolist()
