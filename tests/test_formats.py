"""`blurnet export --format`: the plain network of an export in other formats, and the bundled model's one copy of its weights."""
import json
import shutil
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from blurnet.cli import main
from blurnet.export import ExportedModel, NotAnExportError, default_model_dir, export_model, load_export_weights, model_from_export
from blurnet.formats import FORMAT_FILES
from blurnet.model import create_model
from blurnet.parameter_head import class_probabilities
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
    again = CliRunner().invoke(main, ["export", str(folder), "--format", "keras", "--out", str(tmp_path / "k")])
    assert again.exit_code == 0, again.output  # an earlier export in the same format is replaced
    assert sorted(p.name for p in (tmp_path / "k").iterdir()) == ["blurnet.json", "model.keras"]
    assert json.loads((tmp_path / "k" / "blurnet.json").read_text()) == json.loads((folder / "blurnet.json").read_text())
    for a, b in zip(keras.saving.load_model(tmp_path / "k" / "model.keras").weights, model.weights, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    fresh = create_model("mobilenetv2", weights=None, spectrum=True)
    load_starting_weights(fresh, tmp_path / "k")
    for a, b in zip(fresh.weights, model.weights, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # The export itself starts train_keras too: its SavedModel's variables, read without TensorFlow (blurnet.checkpoint).
    again = create_model("mobilenetv2", weights=None, spectrum=True)
    load_starting_weights(again, folder)
    for a, b in zip(again.weights, model.weights, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_export_command_refuses_a_folder_that_is_not_an_export(tmp_path):
    done = CliRunner().invoke(main, ["export", str(tmp_path), "--format", "keras"])
    assert done.exit_code == 1 and "has no saved_model.pb" in done.output
    assert not tmp_path.with_name(f"{tmp_path.name}-keras").exists()


@pytest.mark.parametrize("fmt", ["keras", "onnx", "litert"])
def test_export_never_replaces_a_savedmodel_or_another_format(tmp_path, fmt):
    source, target = tmp_path / "source", tmp_path / "trained"
    for folder in (source, target):
        (folder / "variables").mkdir(parents=True)
        (folder / "saved_model.pb").write_bytes(b"graph")
        (folder / "variables" / "variables.index").write_bytes(b"weights")
        (folder / "blurnet.json").write_text(json.dumps(META))
    done = CliRunner().invoke(main, ["export", str(source), "--format", fmt, "--out", str(target)])
    assert done.exit_code == 1 and "Traceback" not in done.output, done.output
    assert repr(str(target)) in done.output and f"no {FORMAT_FILES[fmt]}" in done.output
    assert sorted(p.name for p in target.rglob("*")) == ["blurnet.json", "saved_model.pb", "variables", "variables.index"]
    assert (target / "variables" / "variables.index").read_bytes() == b"weights"
    other = tmp_path / "other"  # an export in another format
    other.mkdir()
    fake_runtime_folder(other, "blurnet.tflite" if fmt != "litert" else "blurnet.onnx")
    done = CliRunner().invoke(main, ["export", str(source), "--format", fmt, "--out", str(other)])
    assert done.exit_code == 1 and f"no {FORMAT_FILES[fmt]}" in done.output, done.output
    # An earlier export of this format that holds the model: replacing it would delete the model
    holder = tmp_path / "holder"
    holder.mkdir()
    fake_runtime_folder(holder, FORMAT_FILES[fmt])
    shutil.copytree(source, holder / "model")
    for out in (holder, holder / "model"):
        done = CliRunner().invoke(main, ["export", str(holder / "model"), "--format", fmt, "--out", str(out)])
        assert done.exit_code == 1 and "--out and the export it converts would overlap" in done.output, done.output
    assert (holder / "model" / "variables" / "variables.index").read_bytes() == b"weights"


def test_export_reports_a_disk_error_without_a_traceback(tmp_path, monkeypatch):
    import blurnet.formats

    (tmp_path / "saved_model.pb").write_bytes(b"")

    def read_only(model_dir, fmt, out):
        raise PermissionError(13, "Permission denied", str(out))

    monkeypatch.setattr(blurnet.formats, "export_format", read_only)
    done = CliRunner().invoke(main, ["export", str(tmp_path), "--format", "keras", "--out", str(tmp_path / "k")])
    assert done.exit_code == 1 and isinstance(done.exception, SystemExit), done.output
    assert "cannot write the keras export" in done.output and "Permission denied" in done.output


@pytest.mark.slow
def test_weights_that_do_not_fit_the_declared_architecture_are_refused(tiny_export, tmp_path):
    _, folder = tiny_export
    lying = tmp_path / "lying"
    shutil.copytree(folder, lying)
    meta = json.loads((lying / "blurnet.json").read_text())
    (lying / "blurnet.json").write_text(json.dumps({**meta, "backbone": "densenet121"}))
    with pytest.raises(NotAnExportError, match="SavedModel's weights do not fit"):
        load_export_weights(create_model("densenet121", weights=None, spectrum=True), lying)


def test_predict_on_an_export_whose_weights_do_not_fit_is_one_clear_error(tiny_export, tmp_path):
    import cv2

    _, folder = tiny_export
    lying = tmp_path / "lying"
    shutil.copytree(folder, lying)
    meta = json.loads((lying / "blurnet.json").read_text())
    (lying / "blurnet.json").write_text(json.dumps({**meta, "spectrum": False}))  # the weights have the branch
    cv2.imwrite(str(tmp_path / "a.png"), np.random.default_rng(0).integers(0, 256, (48, 48, 3), dtype=np.uint8))
    done = CliRunner().invoke(main, ["predict", str(tmp_path / "a.png"), "--model", str(lying)])
    assert done.exit_code == 1 and isinstance(done.exception, SystemExit), done.output
    assert "weights do not fit the network its blurnet.json describes" in done.stderr and "Traceback" not in done.output
    # one line: neither TensorFlow's warning per unmatched value nor the tensors' values
    assert "Value in checkpoint could not be found" not in done.stderr and "value=" not in done.stderr
    assert len(done.stderr.strip().splitlines()) <= 2, done.stderr  # the device line and the error


def test_default_export_folder_of_the_current_folder_is_named_after_it(tmp_path, monkeypatch):
    from blurnet.formats import default_out

    monkeypatch.chdir(tmp_path)
    assert default_out(".", "onnx") == tmp_path.parent / f"{tmp_path.name}-onnx"
    assert default_out("..", "onnx") == tmp_path.parent.parent / f"{tmp_path.parent.name}-onnx"
    assert default_out("models/m", "keras").as_posix() == "models/m-keras"  # a named folder stays as given


@pytest.mark.slow
def test_bundled_model_has_one_copy_of_its_weights_and_fine_tunes_from_it():
    folder = default_model_dir()
    assert not (folder / "model.keras").exists()
    size_mb = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20
    assert size_mb <= 40, size_mb
    model = model_from_export(folder)  # what fit --init-from builds
    side = ExportedModel(folder).image_size
    x = np.random.default_rng(3).uniform(0, 255, (3, side, side, 3)).astype("float32")
    loaded = ExportedModel(folder)
    served = np.asarray(loaded(x))
    rebuilt = np.asarray(average_over_views(lambda v: class_probabilities(model(v, training=False)), x, loaded.views))
    np.testing.assert_allclose(rebuilt, served, atol=1e-4)
    assert rebuilt.argmax(axis=1).tolist() == served.argmax(axis=1).tolist()
    # The bundled model has the parameter head: its estimate endpoint answers as the rebuilt network does.
    assert loaded.has_parameters
    estimated = loaded.estimate(x)
    np.testing.assert_allclose(estimated["probabilities"], served, atol=1e-6)
    raw = loaded.answer_tiles(x, loaded.views)[1]
    np.testing.assert_allclose(estimated["sigma"], np.maximum(raw[:, 0], 0), atol=1e-3)
    np.testing.assert_allclose(estimated["radius"], np.maximum(raw[:, 4], 0), atol=1e-3)


# ---------------------------------------------------------------- ONNX and LiteRT (the export extra)


TOLERANCE = 1e-4  # issue 15: probabilities within 1e-4 of the Keras / SavedModel answer


def photo_tiles(side, count=32, height=None, seed=0):
    """`count` float32 crops (side x side, or height x side) of the bundled photographs, 0..255."""
    from data_pipeline.sources import bundled_photo_paths, read_image

    rng = np.random.default_rng(seed)
    images = [read_image(path) for _, path in bundled_photo_paths()[:8]]
    height = height or side
    tiles = []
    for n in range(count):
        image = images[n % len(images)]
        top, left = rng.integers(0, image.shape[0] - height), rng.integers(0, image.shape[1] - side)
        tiles.append(image[top : top + height, left : left + side])
    return np.stack(tiles).astype("float32")


@pytest.fixture(scope="module")
def runtime_files(tiny_export, tmp_path_factory):
    """blurnet.onnx of the tiny export (32 px) and blurnet.tflite declaring 40 px tiles (the same network and weights)."""
    from blurnet.formats import export_format

    _, folder = tiny_export
    where = tmp_path_factory.mktemp("formats")
    done = CliRunner().invoke(main, ["export", str(folder), "--format", "onnx", "--out", str(where / "onnx")])
    assert done.exit_code == 0, done.output
    wide = where / "tiny-40"
    shutil.copytree(folder, wide)
    meta = json.loads((wide / "blurnet.json").read_text())
    (wide / "blurnet.json").write_text(json.dumps({**meta, "image_size": 40}))
    return where / "onnx" / "blurnet.onnx", export_format(wide, "litert", where / "litert")


@pytest.mark.slow
def test_onnx_and_litert_answer_as_the_keras_model_within_1e_4(tiny_export, runtime_files):
    import onnx
    import onnxruntime
    from ai_edge_litert.interpreter import Interpreter

    from blurnet.runtimes import LiteRTModel, OnnxModel

    model, folder = tiny_export
    onnx_file, tflite_file = runtime_files
    keras_answer = lambda x: np.asarray(model(x, training=False))  # noqa: E731 - the single-view, single-tile network
    onnx_model, litert_model = OnnxModel(onnx_file), LiteRTModel(tflite_file)
    errors = {}
    for name, runtime, tiles in [("onnx 32x32", onnx_model, photo_tiles(32)), ("litert 40x40", litert_model, photo_tiles(40)),
                                 ("litert 32x40", litert_model, photo_tiles(40, height=32, seed=1))]:
        errors[name] = np.abs(runtime.predict_tiles(tiles, views=1) - keras_answer(tiles)).max()
    session = onnxruntime.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])  # as the README uses it
    wide = photo_tiles(48, count=4, height=40, seed=2)
    errors["onnx 40x48, plain session"] = np.abs(session.run(None, {"image": wide})[0] - keras_answer(wide)).max()
    # 8 views averaged in numpy equal the SavedModel's serve, which averages them inside the graph
    tiles = photo_tiles(32, seed=3)
    served = np.asarray(ExportedModel(folder)(tiles))
    errors["onnx 8 views"] = np.abs(onnx_model(tiles) - served).max()
    errors["litert 8 views"] = np.abs(litert_model(tiles) - served).max()
    assert max(errors.values()) <= TOLERANCE, errors
    assert (onnx_model.views, onnx_model.image_size, litert_model.image_size) == (8, 32, 40)

    graph = onnx.load(str(onnx_file)).graph
    assert [d.dim_param for d in graph.input[0].type.tensor_type.shape.dim] == ["batch", "height", "width", ""]
    assert graph.input[0].name == "image" and graph.output[0].name == "probabilities"
    declared = Interpreter(model_path=str(tflite_file)).get_input_details()[0]
    assert declared["shape_signature"].tolist() == [-1, -1, -1, 3]  # any batch, any tile size
    assert sorted(p.name for p in onnx_file.parent.iterdir()) == ["blurnet.json", "blurnet.onnx"]


BLOCKED_IMPORTS = """
import json, sys
sys.modules["tensorflow"] = None  # any import of TensorFlow or Keras now fails
sys.modules["keras"] = None
import numpy as np
from blurnet.cli import main
from blurnet.runtimes import load_runtime

tiles = np.load(sys.argv[3])
answers = {f: load_runtime(f)(tiles).tolist() for f in sys.argv[1:3]}
print(json.dumps(answers))
main(["predict", "--format", "json", "--model", sys.argv[1], *sys.argv[4:]])
"""


@pytest.mark.slow
def test_predict_on_onnx_and_litert_runs_without_tensorflow_and_labels_as_the_savedmodel(tiny_export, runtime_files, tmp_path):
    import subprocess

    from data_pipeline.sources import bundled_photo_paths

    _, folder = tiny_export
    onnx_file, tflite_file = runtime_files
    tiles = photo_tiles(32, count=6, seed=4)
    np.save(tmp_path / "tiles.npy", tiles)
    photos = [str(path) for group, path in bundled_photo_paths() if group in ("chelsea", "coffee")]
    run = subprocess.run([sys.executable, "-c", BLOCKED_IMPORTS, str(onnx_file), str(tflite_file), str(tmp_path / "tiles.npy"), *photos],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    first_line, records = run.stdout.split("\n", 1)
    served = np.asarray(ExportedModel(folder)(tiles))  # views=8 in both: the tiny export's test_time_views
    for answer in json.loads(first_line).values():
        np.testing.assert_allclose(np.asarray(answer), served, atol=TOLERANCE)
    assert "device: ONNX Runtime" in run.stderr
    done = CliRunner().invoke(main, ["predict", "--format", "json", "--model", str(folder), *photos])
    assert done.exit_code == 0, done.output
    reference = json.loads(done.stdout)
    on_onnx = json.loads(records)
    assert [r["label"] for r in on_onnx] == [r["label"] for r in reference]
    for mine, theirs in zip(on_onnx, reference, strict=True):
        np.testing.assert_allclose(list(mine["probabilities"].values()), list(theirs["probabilities"].values()), atol=TOLERANCE)


def fake_runtime_folder(tmp_path, name="blurnet.onnx", content=b"not a model"):
    """A folder with a file named like an ONNX or LiteRT export and a blurnet.json (32 px, 8 views)."""
    (tmp_path / name).write_bytes(content)
    (tmp_path / "blurnet.json").write_text(json.dumps({**META, "test_time_views": 8}))
    return tmp_path / name


@pytest.mark.parametrize("fmt, blocked", [("onnx", "tf2onnx"), ("onnx", "onnxruntime"), ("litert", "ai_edge_litert")])
def test_export_without_the_extra_is_a_clear_error(tmp_path, monkeypatch, fmt, blocked):
    (tmp_path / "saved_model.pb").write_bytes(b"")  # checked before the extra, and before TensorFlow loads
    monkeypatch.setitem(sys.modules, blocked, None)
    monkeypatch.setitem(sys.modules, f"{blocked}.interpreter", None)
    done = CliRunner().invoke(main, ["export", str(tmp_path), "--format", fmt])
    assert done.exit_code == 1 and isinstance(done.exception, SystemExit), done.output
    assert 'pip install "blurnet[export]"' in done.output and blocked.replace("_", "-") in done.output
    assert "Traceback" not in done.output and not tmp_path.with_name(f"{tmp_path.name}-{fmt}").exists()


@pytest.mark.parametrize("name, blocked", [("blurnet.onnx", "onnxruntime"), ("blurnet.tflite", "ai_edge_litert")])
def test_predict_without_the_runtime_is_a_clear_error(tmp_path, monkeypatch, name, blocked):
    model = fake_runtime_folder(tmp_path, name)
    photo = tmp_path / "photo.png"
    photo.write_bytes(b"")  # never read: the model fails first
    monkeypatch.setitem(sys.modules, blocked, None)
    monkeypatch.setitem(sys.modules, f"{blocked}.interpreter", None)
    done = CliRunner().invoke(main, ["predict", "--model", str(model.parent), str(photo)])
    assert done.exit_code == 1 and isinstance(done.exception, SystemExit), done.output
    assert 'pip install "blurnet[export]"' in done.output and "Traceback" not in done.output


def test_runtime_files_are_found_and_bad_ones_refused(tmp_path):
    from blurnet.runtimes import OnnxModel, load_runtime, runtime_file

    assert runtime_file(tmp_path) is None and runtime_file(tmp_path / "x.onnx") == tmp_path / "x.onnx"
    broken = fake_runtime_folder(tmp_path)
    assert runtime_file(tmp_path) == broken
    (tmp_path / "saved_model.pb").write_bytes(b"")
    assert runtime_file(tmp_path) is None  # a SavedModel export stays one
    with pytest.raises(NotAnExportError, match="ONNX Runtime cannot load it"):
        load_runtime(broken)
    with pytest.raises(NotAnExportError, match="LiteRT cannot load it"):
        load_runtime(fake_runtime_folder(tmp_path, "blurnet.tflite"))
    with pytest.raises(NotAnExportError, match="does not exist"):
        OnnxModel(tmp_path / "missing.onnx")
    (tmp_path / "blurnet.json").unlink()
    with pytest.raises(NotAnExportError, match="no blurnet.json beside it"):
        OnnxModel(broken)
    with pytest.raises(NotAnExportError, match="neither a .onnx nor a .tflite"):
        load_runtime(tmp_path)


def _onnx_mean_colour(path, channels_out=3):
    """A valid ONNX network that is not blurnet's: the mean colour of each tile, `(batch, channels_out)`."""
    import onnx
    from onnx import TensorProto, helper

    tiles = helper.make_tensor_value_info("tiles", TensorProto.FLOAT, ["batch", "height", "width", 3])
    mean = helper.make_tensor_value_info("mean", TensorProto.FLOAT, ["batch", channels_out])
    graph = helper.make_graph([helper.make_node("ReduceMean", ["tiles"], ["mean"], axes=[1, 2], keepdims=0)],
                              "mean_colour", [tiles], [mean])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))


def test_a_runtime_file_of_another_network_is_refused_at_loading(tmp_path):
    from blurnet.prediction import predict
    from blurnet.runtimes import load_runtime

    path = fake_runtime_folder(tmp_path)
    _onnx_mean_colour(path)
    with pytest.raises(NotAnExportError, match=r"is not a blurnet network: it takes \[\['batch', 'height', 'width', 3\]\] "
                                               r"and answers \[\['batch', 3\]\]"):
        load_runtime(path)
    with pytest.raises(NotAnExportError, match="is not a blurnet network"):  # not one error record per photograph
        predict([np.zeros((64, 64, 3), np.uint8)], model=str(path))


@pytest.mark.slow
def test_runtime_refuses_tiles_it_cannot_answer(runtime_files):
    from blurnet.runtimes import OnnxModel

    model = OnnxModel(runtime_files[0])
    with pytest.raises(ValueError, match=r"32 to 32 px a side.*\(2, 64, 64, 3\)"):
        model(np.zeros((2, 64, 64, 3), "float32"))  # larger tiles are cut by blurnet.classify, not here
    with pytest.raises(ValueError, match=r"\(2, 32, 32\)"):
        model.predict_tiles(np.zeros((2, 32, 32), "float32"), views=1)
    with pytest.raises(ValueError, match="views must be one of"):
        model.predict_tiles(np.zeros((2, 32, 32, 3), "float32"), views=3)
    assert model.predict_tiles(np.zeros((0, 32, 32, 3), "float32"), views=8).shape == (0, 4)


def copy_at_48_px(folder, tmp_path):
    """A copy of the export `folder` whose blurnet.json says 48 px tiles (its network takes any size)."""
    wide = tmp_path / "head-48"
    shutil.copytree(folder, wide)
    (wide / "blurnet.json").write_text(json.dumps({**json.loads((wide / "blurnet.json").read_text()), "image_size": 48}))
    return wide


def assert_wider_tiles_answer_as_keras(runtime, model):
    """Both outputs of `runtime` equal the Keras `model`'s (1e-4) on 48 x 48 and 40 x 32 tiles: other Welch block
    counts than 32 px tiles, and the cepstral branch pads them to its window."""
    for tiles in (photo_tiles(48, count=3, seed=7), photo_tiles(40, count=3, height=32, seed=8)):
        probabilities, raw = runtime.answer_tiles(tiles, views=1)
        expected = model(tiles)
        assert probabilities.shape == (3, 4) and raw.shape == (3, 5)
        np.testing.assert_allclose(probabilities, np.asarray(expected["probabilities"]), atol=1e-4)
        np.testing.assert_allclose(raw, np.asarray(expected["parameters"]), atol=1e-4)


@pytest.mark.slow
def test_onnx_of_a_model_with_the_parameter_head_answers_its_parameters(head_export, tmp_path):
    import onnx

    from blurnet.formats import export_format
    from blurnet.runtimes import load_runtime

    model, folder = head_export
    path = export_format(folder, "onnx")  # parity with both Keras outputs is checked inside (1e-4)
    graph = onnx.load(str(path)).graph
    assert [o.name for o in graph.output] == ["probabilities", "parameters"]  # probabilities first, as the README reads them
    assert [[d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim] for o in graph.output] == [["batch", 4], ["batch", 5]]
    runtime = load_runtime(path)
    assert runtime.has_parameters and json.loads((path.parent / "blurnet.json").read_text())["parameter_head"] is True
    x = photo_tiles(32, count=6, seed=5)
    probabilities, raw = runtime.answer_tiles(x, views=1)
    expected = model(x)
    np.testing.assert_allclose(probabilities, np.asarray(expected["probabilities"]), atol=1e-4)
    np.testing.assert_allclose(raw, np.asarray(expected["parameters"]), atol=1e-4)
    # Tiles of other sizes as well, up to the export's image_size (here made 48 px)
    assert_wider_tiles_answer_as_keras(load_runtime(export_format(copy_at_48_px(folder, tmp_path), "onnx")), model)
    # Over the export's 8 views both outputs equal the SavedModel's (ExportedModel.answer_tiles, the `estimate` path).
    saved = ExportedModel(folder).answer_tiles(x, views=8)
    for mine, theirs in zip(runtime.answer_tiles(x, views=8), saved):
        np.testing.assert_allclose(mine, theirs, atol=1e-4)
    assert runtime.answer_tiles(x[:0], views=8)[1].shape == (0, 5)
    # blurnet predict's records carry `blur` with this runtime too.
    from blurnet.prediction import predict

    image = photo_tiles(32, count=1, height=32, seed=6)[0]
    record = predict([np.pad(image, ((0, 32), (0, 32), (0, 0)), mode="reflect")], model=runtime)[0]
    assert record["blur"]["class"] == record["label"]


@pytest.mark.slow
def test_litert_of_a_model_with_the_parameter_head_answers_its_parameters(head_export, tmp_path):
    """The LiteRT file keeps the head and answers tiles of any size up to its `image_size` (here 48 px): both
    outputs equal the Keras model's on 48 x 48 and 32 x 40 tiles (other Welch block counts; the cepstral branch
    pads them to its 96 px window), and over 8 views the SavedModel's."""
    from blurnet.formats import export_format
    from blurnet.runtimes import load_runtime

    model, folder = head_export
    path = export_format(copy_at_48_px(folder, tmp_path), "litert")  # parity with both Keras outputs is checked inside (1e-4)
    runtime = load_runtime(path)
    assert runtime.has_parameters and runtime.image_size == 48
    assert json.loads((path.parent / "blurnet.json").read_text())["parameter_head"] is True
    assert_wider_tiles_answer_as_keras(runtime, model)
    x = photo_tiles(32, count=3, seed=9)
    for mine, theirs in zip(runtime.answer_tiles(x, views=8), ExportedModel(folder).answer_tiles(x, views=8)):
        np.testing.assert_allclose(mine, theirs, atol=1e-4)
