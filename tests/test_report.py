"""`blurnet report`: a tiny real export, a tiny labelled folder, and the bad-input paths."""
import json
import re
import shutil
from pathlib import Path

import cv2
import keras
import numpy as np
import pytest
from click.testing import CliRunner

from blurnet.cli import main
from blurnet.baselines import laplacian_variance
from blurnet.export import ExportedModel, export_model, read_metadata
from blurnet.baseline_table import write_baseline_comparison
from blurnet.evaluate import bundled_split_makers, evaluate, generated_test_source, labelled_source
from blurnet.metrics import accuracy_by_strength, expected_calibration_error
from blurnet.plots import PLOTS
from blurnet.prediction import predict
from blurnet.report import write_report
from data_pipeline.classes import CLASS_NAMES, BlurRanges
from data_pipeline.labelled import load_labelled_images
from tests.conftest import textured_image

METRIC_KEYS = {
    "accuracy", "macro_f1", "classes", "confusion_matrix", "confusion_matrix_normalized", "per_class", "n_images",
    "expected_calibration_error", "accuracy_by_strength", "model", "data", "baselines",
}


def tiny_model() -> keras.Model:
    """A tiny untrained classifier, the same weights on every call (seed 0)."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input(shape=(None, None, 3), dtype="float32")
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(4, 3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(4, activation="softmax")(x))


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    """A real (tiny, untrained) blurnet-style export with a training log."""
    folder = tmp_path_factory.mktemp("export") / "tiny-model"
    metadata = {
        "classes": list(CLASS_NAMES), "image_size": 32, "blur_ranges": BlurRanges().to_dict(),
        "backbone": "tiny", "weights": "none", "fit_config": {"seed": 0},
    }
    export_model(tiny_model(), folder, metadata)
    (folder / "training_log.csv").write_text("epoch,accuracy,loss,val_accuracy,val_loss\n0,0.3,1.3,0.3,1.4\n1,0.5,1.0,0.4,1.2\n")
    return folder


def blurred(label: int, seed: int, size=(40, 40)) -> np.ndarray:
    image = textured_image(seed, 80, 80).astype(np.float32)
    if label == 1:
        image = cv2.GaussianBlur(image, (0, 0), 2.0)
    elif label == 2:
        image = cv2.filter2D(image, -1, np.full((1, 9), 1 / 9, np.float32))
    elif label == 3:
        disk = cv2.circle(np.zeros((9, 9), np.float32), (4, 4), 4, 1.0, -1)
        image = cv2.filter2D(image, -1, disk / disk.sum())
    return image[20 : 20 + size[0], 20 : 20 + size[1]].astype(np.uint8)


@pytest.fixture
def labelled(tmp_path):
    """3 images per class at 40x40, one 48x40 sharp image, and one too small (skipped)."""
    root = tmp_path / "labelled"
    for label, name in enumerate(CLASS_NAMES):
        (root / name).mkdir(parents=True)
        for i in range(3):
            cv2.imwrite(str(root / name / f"{i}.png"), blurred(label, 10 * label + i))
    cv2.imwrite(str(root / "sharp" / "tall.png"), blurred(0, 99, (48, 40)))
    cv2.imwrite(str(root / "gaussian" / "tiny.png"), blurred(1, 98, (20, 20)))
    return root


def model_answers(export, images):
    """The export's probabilities for a list of images of any sizes, one call per image."""
    model = ExportedModel(export)
    return np.concatenate([np.asarray(model(image[None].astype(np.float32)), np.float64) for image in images])


def photograph_answers(export, paths):
    """What `blurnet predict --full` answers for each photograph, in the order of `paths`."""
    records = predict(list(paths), model=export, full=True)
    return np.array([[r["probabilities"][c] for c in CLASS_NAMES] for r in records], np.float64)


def check_report(out, n_images, export, images, labels, probabilities=None):
    """Checks common to every report; `images`, `labels`: what it was made from; `probabilities`: what the
    model should have answered (default: the export's `serve` on each image)."""
    metrics = json.loads((out / "metrics.json").read_text())
    assert METRIC_KEYS <= set(metrics)
    assert metrics["n_images"] == n_images == len(labels)
    assert np.asarray(metrics["confusion_matrix"]).sum() == n_images
    check_report_numbers(out, labels, model_answers(export, images) if probabilities is None else probabilities)
    # the parameter scatter needs the true parameters: generated test images have them, a labelled folder has not
    expected = [p for p in PLOTS if p != "parameters.png" or "parameters" in metrics]
    assert metrics["plots"] == expected
    for plot in expected:
        assert (out / plot).is_file() and (out / plot).stat().st_size > 1000, plot
    index = (out / "index.md").read_text()
    links = re.findall(r"\]\(([^)]+)\)", index)
    assert set(expected) <= set(links)
    for link in links:
        assert (out / link).is_file(), link
    assert "| sharp |" in index and "Laplacian" in index
    assert not list(out.parent.glob(f".{out.name}.tmp-*"))
    return metrics, index


@pytest.mark.slow
def test_report_on_labelled_folder(export, labelled, tmp_path, caplog):
    out = write_report(export, labelled, tmp_path / "reports" / "r", baseline_images=24, progress=False)
    assert "smaller than 32" in caplog.text
    images, labels, paths = load_labelled_images(labelled)
    # a labelled folder holds photographs: each is answered as `blurnet predict --full` answers it
    metrics, index = check_report(out, 13, export, images, labels, photograph_answers(export, paths))
    assert metrics["data"]["answered_as"] == "blurnet predict --full" and "answered as `blurnet predict --full`" in index
    assert [metrics["per_class"][c]["support"] for c in CLASS_NAMES] == [4, 3, 3, 3]
    assert metrics["accuracy_by_strength"] is None
    assert metrics["model"]["name"] == "tiny-model" and metrics["model"]["image_size"] == 32
    names = [b["name"] for b in metrics["baselines"]]
    assert names[0].startswith("blurnet") and any(n.startswith("Laplacian") for n in names) and any("handcrafted" in n for n in names)
    lap = next(b for b in metrics["baselines"] if b["name"].startswith("Laplacian"))
    scores = np.array([laplacian_variance(image) for image in images])
    called_right = (scores < lap["threshold"]) == (labels != 0)
    assert lap["binary_accuracy"] == pytest.approx(called_right.mean())
    assert lap["recall"] == pytest.approx({c: called_right[labels == i].mean() for i, c in enumerate(CLASS_NAMES)})
    # No validation stream with a labelled folder: the threshold is the midpoint, in log space, of the two medians.
    logs = np.log1p(scores)
    assert lap["threshold"] == pytest.approx(np.expm1((np.median(logs[labels != 0]) + np.median(logs[labels == 0])) / 2))
    assert called_right.sum() == 10  # of 13 images: these are the fixture's known answers
    comparison = write_baseline_comparison(out, tmp_path / "baselines")
    table = (comparison / "README.md").read_text()
    assert all(f"| {n} |" in table for n in names)
    assert json.loads((comparison / "baselines.json").read_text())["baselines"] == metrics["baselines"]


def test_photographs_of_any_size_are_answered_as_predict_full(export, tmp_path):
    """Photographs larger than a tile: scale pyramid (levels 1 and 2 at 32 px tiles, and 4 where the shorter side
    is 128 px or more), every textured tile; the report's model and a compared export give the answers of
    `blurnet predict --full`, not of `serve`."""
    root = tmp_path / "photos"
    for label, name in enumerate(CLASS_NAMES):
        (root / name).mkdir(parents=True)
        image = cv2.resize(blurred(label, 40 + label, (40, 40)), (128, 160 - 16 * label), interpolation=cv2.INTER_CUBIC)
        cv2.imwrite(str(root / name / "photo.png"), image)
    out = write_report(export, root, tmp_path / "r", baselines=False, progress=False, compare=[export])
    images, labels, paths = load_labelled_images(root)
    expected = photograph_answers(export, paths)
    served = model_answers(export, images)
    assert np.abs(served - expected).max() > 1e-3  # the two procedures differ on these photographs
    metrics, _ = check_report_numbers(out, labels, expected)
    assert metrics["baselines"][1]["accuracy"] == metrics["accuracy"] and metrics["baselines"][1]["recall"] == metrics["baselines"][0]["recall"]
    result = evaluate(ExportedModel(export), labelled_source(root, 32), [ExportedModel(export)], baselines=False, progress=False)
    np.testing.assert_allclose(result.probabilities, expected, atol=1e-6)
    np.testing.assert_allclose(result.other_probabilities[0], expected, atol=1e-6)  # the compared export as well


def test_a_labelled_folder_goes_through_in_uint8_chunks_of_bounded_pixels(tmp_path, monkeypatch):
    import blurnet.evaluate

    root = tmp_path / "photos"
    for label, name in enumerate(CLASS_NAMES[:2]):
        (root / name).mkdir(parents=True)
        for k in range(3):  # three 56 x 40 photographs per class, and one of another shape
            cv2.imwrite(str(root / name / f"p{k}.png"), blurred(label, 10 * label + k, (40, 56)))
    cv2.imwrite(str(root / "sharp" / "other.png"), blurred(0, 99, (40, 40)))
    monkeypatch.setattr(blurnet.evaluate, "PHOTO_CHUNK_PIXELS", 2 * 56 * 40 + 1)
    chunks = list(labelled_source(root, 32).chunks)
    assert sorted(len(c[0]) for c in chunks) == [1, 2, 2, 2]  # 6 photographs of 56 x 40 in twos; one 40 x 40
    assert all(c[0].dtype == np.uint8 for c in chunks)
    images, _, paths = load_labelled_images(root)
    by_path = dict(zip(paths, images))
    assert sum(int(sum(np.array_equal(by_path[p], im) for p, im in zip(c[3], c[0]))) for c in chunks) == 7
    monkeypatch.setattr(blurnet.evaluate, "PHOTO_CHUNK_PIXELS", 10)  # smaller than one photograph: one at a time
    assert [len(c[0]) for c in labelled_source(root, 32).chunks] == [1] * 7
    # Read as evaluated: the first chunk costs the reading of its own photographs and the next one only
    import data_pipeline.labelled

    reads, read_image = [], data_pipeline.labelled.read_image
    monkeypatch.setattr(data_pipeline.labelled, "read_image", lambda path: reads.append(path) or read_image(path))
    source = labelled_source(root, 32)
    assert reads == [] and source.total == 7
    first = next(iter(source.chunks))
    assert len(first[0]) == 1 and len(reads) == 2
    (root / "defocus").mkdir()
    (root / "defocus" / "broken.png").write_bytes(b"not an image")
    source = labelled_source(root, 32)
    assert sum(len(c[0]) for c in source.chunks) == 7 and source.description["n_images"] == 7  # the broken one left out
    assert source.description["classes_missing"] == ["motion", "defocus"]


def check_report_numbers(out, labels, probabilities):
    """`metrics.json`'s calibration error and accuracy are those of `probabilities`."""
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["expected_calibration_error"] == pytest.approx(expected_calibration_error(labels, probabilities), abs=1e-5)
    assert metrics["accuracy"] == pytest.approx(np.mean(probabilities.argmax(axis=1) == labels))
    return metrics, (out / "index.md").read_text()


def test_compare_adds_another_export_on_the_same_images(export, labelled, tmp_path):
    out = tmp_path / "cmp"
    table = tmp_path / "comparison"
    result = CliRunner().invoke(main, ["report", "--model", str(export), "--data", str(labelled), "--out", str(out),
                                       "--no-baselines", "--compare", str(export), "--baselines-dir", str(table)])
    assert result.exit_code == 0, result.output
    assert json.loads((table / "baselines.json").read_text())["baselines"] == json.loads((out / "metrics.json").read_text())["baselines"]
    assert "| tiny-model (tiny) |" in (table / "README.md").read_text()
    rows = json.loads((out / "metrics.json").read_text())["baselines"]
    assert [r["name"] for r in rows] == ["blurnet (tiny)", "tiny-model (tiny)"]
    # The same model on the same images: the same numbers.
    assert rows[1]["accuracy"] == rows[0]["accuracy"] and rows[1]["recall"] == rows[0]["recall"]
    assert rows[1]["parameters"] == rows[0]["parameters"] > 0
    assert "| tiny-model (tiny) |" in (out / "index.md").read_text()
    (tmp_path / "others").mkdir()
    (tmp_path / "others" / "notes.txt").write_text("not a comparison")
    refused = CliRunner().invoke(main, ["report", "--model", str(export), "--data", str(labelled), "--out", str(tmp_path / "k"),
                                        "--no-baselines", "--compare", str(export), "--baselines-dir", str(tmp_path / "others")])
    # The comparison would replace a folder of other files: refused by name, before the evaluation.
    assert refused.exit_code == 1 and "holds files but no baselines.json" in refused.output, refused.output
    assert not (tmp_path / "k").exists()
    # The comparison in the report's own folder (or around it) would delete the report: refused before the evaluation
    for table in (tmp_path / "r", tmp_path):
        clash = CliRunner().invoke(main, ["report", "--model", str(export), "--data", str(labelled), "--out",
                                          str(tmp_path / "r"), "--no-baselines", "--compare", str(export), "--baselines-dir", str(table)])
        assert clash.exit_code == 1 and "--baselines-dir and the report would overlap" in clash.output, clash.output
        assert not (tmp_path / "r").exists()
    (tmp_path / "table").mkdir()
    (tmp_path / "table" / "baselines.json").write_text("{}")  # an earlier comparison, the test photographs inside it
    shutil.copytree(labelled, tmp_path / "table" / "data")
    holding = CliRunner().invoke(main, ["report", "--model", str(export), "--data", str(tmp_path / "table" / "data"),
                                        "--out", str(tmp_path / "q"), "--no-baselines", "--compare", str(export),
                                        "--baselines-dir", str(tmp_path / "table")])
    assert holding.exit_code == 1 and "--baselines-dir and --data would overlap" in holding.output, holding.output
    assert (tmp_path / "table" / "data" / "sharp" / "0.png").is_file() and not (tmp_path / "q").exists()
    inside = CliRunner().invoke(main, ["report", "--model", str(export), "--data", str(labelled), "--out",
                                       str(Path(export) / "report"), "--no-baselines"])
    assert inside.exit_code == 1 and "--out and the model would overlap" in inside.output, inside.output
    seed = CliRunner().invoke(main, ["report", "--model", str(export), "--seed", "-1"])
    assert seed.exit_code == 2 and "-1 is not in the range 0<=x<=4294967295" in seed.output
    # A comparison that cannot be written once the report is (a disk that fills meanwhile): the report stays, and
    # the message says which of the two was written.
    import blurnet.baseline_table

    def disk_full(folder, out):
        raise OSError(28, "No space left on device", str(out))

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(blurnet.baseline_table, "write_baseline_comparison", disk_full)
        full = CliRunner().invoke(main, ["report", "--model", str(export), "--data", str(labelled), "--out",
                                         str(tmp_path / "f"), "--no-baselines", "--compare", str(export), "--baselines-dir", str(tmp_path / "t")])
    assert full.exit_code == 1 and isinstance(full.exception, SystemExit), full.output
    assert f"report written to {tmp_path / 'f'}, but not the baseline comparison" in full.output
    assert "No space left on device" in full.output and (tmp_path / "f" / "metrics.json").is_file()
    assert not (tmp_path / "t").exists()
    jpeg = CliRunner().invoke(main, ["report", "--model", str(export), "--data", str(labelled), "--out", str(tmp_path / "j"),
                                     "--no-baselines", "--jpeg", "30"])
    assert jpeg.exit_code == 0 and (tmp_path / "j" / "metrics.json").is_file(), jpeg.output
    assert json.loads((tmp_path / "j" / "metrics.json").read_text())["data"]["jpeg_quality"] == 30
    assert "JPEG-compressed at quality 30" in (tmp_path / "j" / "index.md").read_text()
    bad = CliRunner().invoke(main, ["report", "--model", str(export), "--data", str(labelled), "--out", str(tmp_path / "x"),
                                    "--compare", str(tmp_path)])
    assert bad.exit_code == 1 and "blurnet.json" in bad.output and not (tmp_path / "x").exists()


def test_report_names_the_test_time_views(export, labelled, tmp_path):
    continued = {**read_metadata(export), "command": "blurnet fit --init-from tiny-model",
                 "started_from": {"command": "blurnet fit --tiny-recipe"}}
    four = export_model(tiny_model(), tmp_path / "four-views", continued, views=4)
    out = tmp_path / "views"
    result = CliRunner().invoke(main, ["report", "--model", str(four), "--data", str(labelled), "--out", str(out),
                                       "--no-baselines", "--compare", str(export), "--compare", str(four)])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["model"]["test_time_views"] == 4
    rows = metrics["baselines"]
    assert [r["name"] for r in rows] == ["blurnet (tiny, 4 views)", "tiny-model (tiny)", "four-views (tiny, 4 views)"]
    assert rows[2]["note"].endswith("trained with: blurnet fit --init-from tiny-model; "
                                    "starting from an export trained with: blurnet fit --tiny-recipe")
    assert "starting from" not in rows[1]["note"]
    assert "averaged over 4 flipped/rotated views" in (out / "index.md").read_text()


@pytest.mark.slow
def test_report_on_generated_test_stream(export, tmp_path):
    out = write_report(export, None, tmp_path / "gen", num_images=8, batch_size=8, baseline_images=16, progress=False)
    [(images, labels, _, _)] = list(generated_test_source(32, BlurRanges(), 8, 0, 8).chunks)  # what the report evaluated
    metrics, _ = check_report(out, 8, export, images, labels)
    assert [metrics["per_class"][c]["support"] for c in CLASS_NAMES] == [2, 2, 2, 2]
    # The held-out photographs of seed 0, less the microscope image that is blurred already.
    assert metrics["data"]["photographs"] == ["camera", "gravel"] and metrics["data"]["left_out"] == {"cell": "already blurred"}
    by_strength = metrics["accuracy_by_strength"]
    assert set(by_strength) == {"gaussian", "motion", "defocus"}
    assert by_strength["motion"]["edges"] == [5.0, 8.2, 11.4, 14.6, 17.8, 21.0]
    assert all(sum(v["count"]) == 2 for v in by_strength.values())
    # Identical every run.
    again = write_report(export, None, tmp_path / "gen2", num_images=8, batch_size=8, baselines=False, progress=False)
    assert json.loads((again / "metrics.json").read_text())["confusion_matrix"] == metrics["confusion_matrix"]
    # Another --seed draws other images from the same held-out photographs (seed 3 alone would split off ihc, text).
    other = write_report(export, None, tmp_path / "gen3", num_images=8, batch_size=8, seed=3, baselines=False, progress=False)
    other_data = json.loads((other / "metrics.json").read_text())["data"]
    assert other_data["photographs"] == ["camera", "gravel"] and other_data["seed"] == 3
    assert other_data["split"] == {"crop_size": 32, "seed": 0}


def test_the_test_split_is_the_models_whatever_the_seed_or_crop_size(caplog):
    from data_pipeline.sources import bundled_splits

    def photographs(**kwargs):
        return generated_test_source(ranges=BlurRanges(), num_images=8, batch_size=8, **kwargs).description["photographs"]

    assert photographs(image_size=96, seed=3) == ["ihc", "text"]  # split by seed 3: not the bundled model's test
    assert photographs(image_size=96, seed=3, split_seed=0) == ["camera", "gravel"]
    # A model trained at 160 px tested on 320 px crops: split at 320 px, moon (a training photograph at 160) would be
    # in the test split; split at the model's 160 px, the test split is the model's.
    def test_split(**kwargs):
        return [p.name for p in bundled_split_makers(320, BlurRanges(), 0, 8, ("test",), **kwargs)[1]["test"]]

    trained = {p.name for s in ("train", "val") for p in bundled_splits(160, 0)[s]}
    assert "moon" in trained and "moon" in test_split()
    assert test_split(split_size=160) == [p.name for p in bundled_splits(160, 0)["test"]] == ["camera", "cell", "gravel"]


def test_empty_class_folder_left_out(export, labelled, tmp_path, caplog):
    for f in (labelled / "motion").iterdir():
        f.unlink()
    out = write_report(export, labelled, tmp_path / "r", baselines=False, progress=False)
    assert "motion" in caplog.text
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["per_class"]) == {"sharp", "gaussian", "defocus"}
    assert metrics["n_images"] == 10


def test_unknown_class_folder_is_clear_error(export, labelled, tmp_path):
    (labelled / "blurry").mkdir()
    with pytest.raises(ValueError, match="allowed names are sharp, gaussian, motion, defocus"):
        write_report(export, labelled, tmp_path / "r", progress=False)
    result = CliRunner().invoke(main, ["report", "--model", str(export), "--data", str(labelled), "--out", str(tmp_path / "r")])
    assert result.exit_code == 1
    assert "blurry" in result.output and "allowed names" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "r").exists()


def test_non_export_model_folder_is_clean_cli_error(tmp_path):
    (tmp_path / "notamodel").mkdir()
    result = CliRunner().invoke(main, ["report", "--model", str(tmp_path / "notamodel"), "--out", str(tmp_path / "r")])
    assert result.exit_code == 1
    assert "not a blurnet export" in result.output and "saved_model.pb" in result.output
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)
    assert not (tmp_path / "r").exists()
    missing = CliRunner().invoke(main, ["report", "--model", str(tmp_path / "nowhere"), "--out", str(tmp_path / "r")])
    assert missing.exit_code == 1 and "does not exist" in missing.output and "Traceback" not in missing.output


def test_interrupted_report_keeps_old_one(export, labelled, tmp_path, monkeypatch):
    out = tmp_path / "r"
    out.mkdir()
    (out / "metrics.json").write_text("{}")  # an earlier report
    (out / "index.md").write_text("old report")

    def boom(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr("blurnet.plots.plot_psf_gallery", boom)
    with pytest.raises(KeyboardInterrupt):
        write_report(export, labelled, out, baselines=False, progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["index.md", "metrics.json"]
    assert (out / "index.md").read_text() == "old report"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    # A folder that is no report is never replaced, not even by a complete one.
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    monkeypatch.undo()
    monkeypatch.setattr("blurnet.report.evaluate", lambda *args, **kwargs: pytest.fail("evaluated before the folder was checked"))
    with pytest.raises(ValueError, match="mine' exists and holds files but no metrics.json"):
        write_report(export, labelled, tmp_path / "mine", baselines=False, progress=False)
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]


def test_expected_calibration_error_known_case():
    probs = np.array([[0.9, 0.1, 0, 0], [0.9, 0.1, 0, 0], [0.3, 0.7, 0, 0], [0.3, 0.7, 0, 0]])
    y = np.array([0, 1, 1, 1])
    # Bin of 0.9: accuracy 1/2, confidence 0.9 -> 0.4; bin of 0.7: accuracy 1, confidence 0.7 -> 0.3.
    assert expected_calibration_error(y, probs) == pytest.approx(0.5 * 0.4 + 0.5 * 0.3)
    perfect = np.eye(4)[[0, 1, 2, 3]]
    assert expected_calibration_error([0, 1, 2, 3], perfect) == pytest.approx(0.0)


def test_accuracy_by_strength_bins():
    y_true = np.array([1, 1, 1, 0, 3])
    y_pred = np.array([1, 0, 1, 0, 3])
    strength = np.array([1.1, 1.2, 3.4, 0.0, 6.9])
    out = accuracy_by_strength(y_true, y_pred, strength, BlurRanges())
    assert out["gaussian"]["edges"] == [1.0, 1.5, 2.0, 2.5, 3.0, 3.5]
    assert out["gaussian"]["count"] == [2, 0, 0, 0, 1]
    assert out["gaussian"]["accuracy"] == [0.5, None, None, None, 1.0]
    assert out["motion"]["count"] == [0] * 5 and out["defocus"]["accuracy"][4] == 1.0


def test_cli_shows_each_warning_once_on_stderr(export, labelled, tmp_path):
    args = ["report", "--model", str(export), "--data", str(labelled), "--out", str(tmp_path / "r"), "--no-baselines"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert result.stderr.count("warning: skipped 1 of 14 files") == 1, result.stderr
    quiet = CliRunner().invoke(main, ["-q"] + args[:-3] + ["--out", str(tmp_path / "q"), "--no-baselines"])
    assert quiet.exit_code == 0 and quiet.stderr.count("warning: skipped") == 1, quiet.stderr


def test_a_generated_test_that_misses_classes_is_measured_over_the_classes_it_has(export, tmp_path):
    out = write_report(export, None, tmp_path / "small", num_images=2, batch_size=2, baselines=False, progress=False)
    metrics = json.loads((out / "metrics.json").read_text())  # valid JSON: no NaN for an absent class
    present = metrics["data"]["classes_present"]
    assert len(present) == 2 and sorted(metrics["per_class"]) == sorted(present)
    assert np.array(metrics["confusion_matrix"]).sum() == 2 and np.array(metrics["confusion_matrix"]).shape == (4, 4)
    assert f"macro-F1 over the classes in their labels ({', '.join(present)})" in (out / "index.md").read_text()


def test_the_confusion_plot_shows_no_recall_for_a_class_without_images():
    from blurnet.metrics import classification_metrics
    from blurnet.plots import confusion_figure

    y_true = np.array([0, 0, 2, 2, 3])  # no gaussian image
    metrics = classification_metrics(y_true, np.eye(4)[[0, 1, 2, 3, 3]])
    figure = confusion_figure(metrics)
    counts, normalised = ([t.get_text() for t in ax.texts] for ax in figure.axes[:2])
    assert counts == ["1", "1", "0", "0", "0", "0", "0", "0", "0", "0", "1", "1", "0", "0", "0", "1"]
    assert normalised[4:8] == ["n/a"] * 4  # the gaussian row, in grey; the other texts keep their contrast
    assert [t.get_color() for t in figure.axes[1].texts[4:8]] == ["grey"] * 4
    assert figure.axes[1].texts[2].get_color() != figure.axes[1].texts[15].get_color()  # 0.00 on light, 1.00 on dark
    assert normalised[:4] == ["0.50", "0.50", "0.00", "0.00"] and normalised[15] == "1.00"
    import matplotlib.pyplot as plt

    plt.close(figure)


def test_the_baselines_see_a_large_photograph_at_the_scale_predict_works_at(tmp_path, monkeypatch):
    import blurnet.evaluate

    root = tmp_path / "photos"
    (root / "sharp").mkdir(parents=True)
    cv2.imwrite(str(root / "sharp" / "big.png"), textured_image(3, 1500, 2200))  # auto scale 2200 / 1024
    seen = []
    monkeypatch.setattr(blurnet.evaluate, "handcrafted_features", lambda image: seen.append(image.shape) or np.zeros(3))
    monkeypatch.setattr(blurnet.evaluate, "laplacian_variance", lambda image: seen.append(image.shape) or 1.0)

    class Flat:  # a stand-in model: every tile sharp
        image_size = 64

        def __call__(self, tiles):
            return np.tile([1.0, 0.0, 0.0, 0.0], (len(tiles), 1))

    result = blurnet.evaluate.evaluate(Flat(), labelled_source(root, 4), progress=False)
    assert seen == [(698, 1024, 3), (698, 1024, 3)] and result.y_true.tolist() == [0]


def test_the_worst_errors_are_kept_as_thumbnails_of_the_same_content():
    from blurnet.evaluate import THUMBNAIL_SIDE, WorstErrors

    rng = np.random.default_rng(0)
    images = [rng.uniform(0, 255, (1000, 2000, 3)).astype(np.float32) for _ in range(3)]
    images[0][:, :1000] = 20.0  # left half dark: the thumbnail keeps it on the left
    small = rng.uniform(0, 255, (64, 48, 3)).astype(np.float32)
    errors = WorstErrors(limit=3)
    probabilities = np.array([[0.1, 0.9, 0, 0], [0.2, 0.8, 0, 0], [0.4, 0.6, 0, 0]], np.float32)
    errors.add(np.stack(images), np.zeros(3, int), None, None, probabilities)
    errors.add(small[None], np.zeros(1, int), None, None, np.array([[0.3, 0.7, 0, 0]], np.float32))

    worst = errors.worst_first()
    assert [round(e["probability"], 2) for e in worst] == [0.9, 0.8, 0.7]
    assert worst[0]["image"].shape == (THUMBNAIL_SIDE // 2, THUMBNAIL_SIDE, 3)
    assert worst[0]["image"][:, : THUMBNAIL_SIDE // 2 - 1].mean() == pytest.approx(20.0, abs=1e-3)
    assert worst[0]["image"][:, THUMBNAIL_SIDE // 2 + 1 :].mean() == pytest.approx(images[0][:, 1000:].mean(), abs=0.5)
    assert worst[1]["image"].shape == (THUMBNAIL_SIDE // 2, THUMBNAIL_SIDE, 3)
    np.testing.assert_array_equal(worst[2]["image"], small)  # a small image is kept as it is, as a copy
    small[:] = 0
    assert worst[2]["image"].mean() > 100


def test_not_finite_answers_are_a_clear_error_not_a_score(export, labelled, tmp_path):
    from blurnet.export import ExportedModel

    class Damaged(ExportedModel):  # a damaged export: NaN for the second image of each batch
        def __call__(self, images):
            p = np.asarray(super().__call__(images), np.float64)
            p[1] = np.nan
            return p

    damaged = Damaged(export)
    with pytest.raises(ValueError, match=r"answered \[nan, nan, nan, nan\] for test image 1: not finite probabilities "
                                         r"\(1 of 8 images in this batch\)"):
        write_report(export, None, tmp_path / "gen", num_images=8, batch_size=8, baselines=False, progress=False,
                     model=damaged)
    with pytest.raises(ValueError, match=rf"{damaged.name} answered \[nan, nan, nan, nan\] for test image 1"):
        write_report(export, None, tmp_path / "cmp", num_images=8, batch_size=8, baselines=False, progress=False,
                     compare=[damaged])  # a compared export is checked as the model is
    with pytest.raises(ValueError, match=r"not finite probabilities \(NaN or infinity\) for 1 of 4 tiles"):
        write_report(export, labelled, tmp_path / "photos", baselines=False, progress=False, model=damaged)
    assert not (tmp_path / "gen").exists() and not (tmp_path / "photos").exists() and not (tmp_path / "cmp").exists()


def test_a_report_never_replaces_a_folder_holding_its_data_or_a_compared_export(export, labelled, tmp_path):
    from blurnet.export import ExportedModel

    out = tmp_path / "r"
    out.mkdir()
    (out / "metrics.json").write_text("{}")  # an earlier report, the test photographs moved into it
    data = out / "data"
    shutil.copytree(labelled, data)
    with pytest.raises(ValueError, match=r"--out and --data would overlap"):
        write_report(export, data, out, baselines=False, progress=False)
    with pytest.raises(ValueError, match=r"--out and a --compare export would overlap"):
        write_report(labelled.parent / "model", labelled, export / "report", baselines=False, progress=False,
                     compare=[export], model=ExportedModel(export))
    assert sorted(p.name for p in data.rglob("*.png")) == sorted(p.name for p in labelled.rglob("*.png"))
    with pytest.raises(ValueError, match=r"--baseline-images must be >= 1, got 0"):
        write_report(export, labelled, tmp_path / "b", progress=False, baseline_images=0)
