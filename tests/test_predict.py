"""`blurnet predict`: paths, formats, tiling, scale, aggregation, blur maps and bad input."""
import dataclasses
import json
import math
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

import blurnet
from blurnet.blurmap import map_size
from blurnet.cli import main
from blurnet.classify import auto_scale, map_boxes, parse_scale, prepare, select_tiles, tile_boxes, weighted_answer
from blurnet.inputs import expand_paths
from blurnet.prediction import predict
from data_pipeline.classes import CLASS_NAMES, BlurRanges
from data_pipeline.degrade import BlurParams, degrade
from data_pipeline.sources import ImageReadError, bundled_photo_paths, read_image
from tests.conftest import textured_image


@pytest.fixture(scope="session")
def export(tmp_path_factory):
    """A tiny untrained export (MobileNetV2, weights=None, 32 px crops), built once."""
    from blurnet.export import export_model
    from blurnet.model import create_model

    model = create_model("mobilenetv2", weights=None)
    folder = tmp_path_factory.mktemp("export") / "m"
    metadata = {"classes": list(CLASS_NAMES), "image_size": 32, "blur_ranges": BlurRanges().to_dict(), "backbone": "mobilenetv2", "weights": "none"}
    return str(export_model(model, folder, metadata))


def textured(seed, height, width):
    """`textured_image` plus strong noise, so that every 32 px tile has texture well above 4."""
    noise = np.random.default_rng(seed).normal(0, 25, (height, width, 3))
    return np.clip(textured_image(seed, height, width) + noise, 0, 255).astype(np.uint8)


def write_rgb(path, rgb):
    assert cv2.imwrite(str(path), np.ascontiguousarray(rgb[:, :, ::-1]))
    return str(path)


def check_answer(record, tiles=None):
    assert set(record) >= {"path", "label", "probabilities", "scale", "tiles"}, record
    assert "error" not in record
    assert list(record["probabilities"]) == list(CLASS_NAMES)
    assert math.isclose(sum(record["probabilities"].values()), 1.0, abs_tol=1e-5)
    assert all(0 <= p <= 1 for p in record["probabilities"].values())
    assert record["label"] == max(record["probabilities"], key=record["probabilities"].get)
    if tiles is not None:
        assert record["tiles"] == tiles


# ---------------------------------------------------------------- pure functions (no model)


def test_tile_boxes_cover_the_image_with_full_tiles():
    boxes = tile_boxes(100, 70, 32)
    assert len(boxes) == 4 * 3
    covered = np.zeros((100, 70), bool)
    for top, left, th, tw in boxes:
        assert (th, tw) == (32, 32)
        assert top + th <= 100 and left + tw <= 70
        covered[top : top + th, left : left + tw] = True
    assert covered.all()
    assert tile_boxes(64, 64, 32) == [(0, 0, 32, 32), (0, 32, 32, 32), (32, 0, 32, 32), (32, 32, 32, 32)]
    # smaller than a tile on one side: one tile spans it
    assert tile_boxes(40, 20 + 32, 64) == [(0, 0, 40, 52)]


def test_auto_scale_rule():
    assert auto_scale(300, 451) == 1.0  # never upscaled
    assert auto_scale(1024, 768) == 1.0
    assert auto_scale(3000, 4000) == pytest.approx(4000 / 1024)
    assert auto_scale(1024, 4096) == pytest.approx(4.0)
    assert auto_scale(40, 8192) == pytest.approx(40 / 32)  # shorter side kept >= 32 px
    assert parse_scale("auto") == "auto" and parse_scale("2.5") == 2.5 and parse_scale("1") == 1.0
    for bad in ("0", "-1", "0.5", "nan", "big"):
        with pytest.raises(ValueError, match=f"downscale factor >= 1.*{bad}"):
            parse_scale(bad)


def level_answer(probabilities, textures):
    """A level's (mean, area, tiles used) from all its tiles, as `classify_levels` forms it without a budget."""
    chosen, mean_weights, area_weights = select_tiles(np.asarray(textures, np.float64))
    return (*weighted_answer(np.asarray(probabilities)[chosen], mean_weights, area_weights), len(chosen))


def test_the_mean_weighs_tiles_by_texture_and_ignores_flat_tiles():
    probs = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1.0]])
    mean, _, used = level_answer(probs, [10.0, 30.0, 1.0])
    assert used == 2
    np.testing.assert_allclose(mean, [0.25, 0.75, 0, 0])
    mean, _, used = level_answer(probs, [1.0, 2.0, 3.0])  # all flat: plain mean
    assert used == 3
    np.testing.assert_allclose(mean, [1 / 3, 1 / 3, 0, 1 / 3])


def test_expand_paths_folders_globs_and_missing(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ("a/x.png", "a/b/y.JPG", "a/b/z.tiff", "a/notes.txt", "top.png"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "empty").mkdir()
    got = expand_paths([tmp_path / "a", str(tmp_path / "*.png"), tmp_path / "missing.png", str(tmp_path / "*.gif"), tmp_path / "empty", tmp_path / "a/notes.txt"])
    files = [os.path.relpath(p, tmp_path) for p, e in got if e is None]
    assert files == ["a/b/y.JPG", "a/b/z.tiff", "a/x.png", "top.png", "a/notes.txt"]
    errors = {os.path.basename(p): e for p, e in got if e is not None}
    assert errors == {"missing.png": "no such file or folder", "*.gif": "no file matches this pattern", "empty": errors["empty"]}
    assert "no image files" in errors["empty"]


def test_a_file_named_by_several_arguments_is_classified_once(tmp_path):
    from blurnet.inputs import list_items

    (tmp_path / "a").mkdir()
    for name in ("a/x.png", "a/y.png"):
        (tmp_path / name).write_bytes(b"x")
    array = np.zeros((40, 40, 3), np.uint8)
    args = [str(tmp_path / "a" / "x.png"), str(tmp_path / "a"), str(tmp_path / "a" / "." / "x.png"), array,
            str(tmp_path / "*" / "y.png"), str(tmp_path / "gone.png"), str(tmp_path / "gone.png"), array]
    items = list_items(args)
    assert [os.path.relpath(name, tmp_path) if name[0] != "<" else name for name, _, _ in items] == [
        "a/x.png", "a/y.png", "<array 0>", "gone.png", "<array 1>"]  # a missing path named twice: one error, as expand_paths
    assert [error for _, _, error in items] == [None, None, None, "no such file or folder", None]
    assert [name for name, _ in expand_paths(args[:3] + args[4:7])] == [name for name, _, _ in items if name[0] != "<"]


# ---------------------------------------------------------------- bad input, every case


def bad_and_good_inputs(folder):
    """Generated fixtures: (name -> path) and the names expected to get an answer."""
    from PIL import Image

    rgb = textured(1, 64, 80)
    paths = {}
    paths["good"] = write_rgb(folder / "good.png", rgb)
    paths["gray"] = str(folder / "gray.png")
    cv2.imwrite(paths["gray"], cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
    paths["rgba"] = str(folder / "rgba.png")
    cv2.imwrite(paths["rgba"], np.dstack([rgb[:, :, ::-1], np.full(rgb.shape[:2], 128, np.uint8)]))
    paths["png16"] = str(folder / "deep.png")
    cv2.imwrite(paths["png16"], rgb[:, :, ::-1].astype(np.uint16) * 257)
    paths["cmyk"] = str(folder / "cmyk.jpg")
    Image.fromarray(rgb).convert("CMYK").save(paths["cmyk"], quality=95)
    paths["exif"] = str(folder / "rotated.jpg")
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    Image.fromarray(textured(2, 40, 100)).save(paths["exif"], exif=exif, quality=95)
    jpeg = cv2.imencode(".jpg", rgb[:, :, ::-1])[1].tobytes()
    paths["truncated"] = str(folder / "truncated.jpg")
    open(paths["truncated"], "wb").write(jpeg[: len(jpeg) // 2])
    paths["corrupt"] = str(folder / "corrupt.png")
    open(paths["corrupt"], "wb").write(b"\x89PNG\r\n\x1a\n" + np.random.default_rng(0).integers(0, 256, 500, dtype=np.uint8).tobytes())
    paths["text"] = str(folder / "notes.jpg")
    open(paths["text"], "w").write("this is not an image\n")
    paths["empty"] = str(folder / "empty.png")
    open(paths["empty"], "wb").close()
    paths["tiny"] = write_rgb(folder / "tiny.png", rgb[:20, :20])
    paths["thin"] = write_rgb(folder / "thin.png", rgb[:16, :80])
    return paths


@pytest.mark.slow
def test_every_bad_input_gets_a_record_and_the_others_answers(tmp_path, export):
    paths = bad_and_good_inputs(tmp_path)
    names = list(paths)
    records = predict([paths[n] for n in names], model=export)
    assert [r["path"] for r in records] == [paths[n] for n in names]
    by_name = dict(zip(names, records))
    # 64 x 80 px at 32 px tiles: 2 x 3 tiles
    for name in ("good", "gray", "rgba", "png16", "cmyk"):
        check_answer(by_name[name], tiles=6)
        assert by_name[name]["scale"] == 1.0
    # the same pixels decoded from PNG (8 and 16 bit) give the same answer
    for name in ("png16", "rgba"):
        for c in CLASS_NAMES:
            assert by_name[name]["probabilities"][c] == pytest.approx(by_name["good"]["probabilities"][c], abs=1e-4)
    # EXIF orientation applied: stored 100 wide x 40 high, displayed 40 wide x 100 high
    assert read_image(paths["exif"]).shape == (100, 40, 3)
    check_answer(by_name["exif"], tiles=4 * 2)
    # truncated JPEG: an answer when the decoder returns the partial image, else a read error (decoders differ)
    try:
        partial = read_image(paths["truncated"])
    except ImageReadError:
        assert set(by_name["truncated"]) == {"path", "error"}
        assert "not a readable image" in by_name["truncated"]["error"]
    else:
        assert partial.shape == (64, 80, 3)
        check_answer(by_name["truncated"], tiles=6)
    assert "not a readable image" in by_name["corrupt"]["error"]
    assert "not a readable image" in by_name["text"]["error"]
    assert "empty file (0 bytes)" in by_name["empty"]["error"]
    assert by_name["tiny"]["error"] == "image is 20 x 20 px; blurnet needs at least 32 px on each side"
    assert by_name["thin"]["error"] == "image is 80 x 16 px; blurnet needs at least 32 px on each side"
    for name in ("corrupt", "text", "empty", "tiny", "thin"):
        assert set(by_name[name]) == {"path", "error"}


@pytest.mark.slow
def test_cli_bad_inputs_exit_1_without_traceback(tmp_path, export):
    paths = bad_and_good_inputs(tmp_path)
    result = CliRunner().invoke(main, ["predict", str(tmp_path), "--model", export, "--format", "json"])
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output + result.stderr
    records = json.loads(result.stdout)
    assert len(records) == len(paths)
    errors = [r for r in records if "error" in r]
    assert 5 <= len(errors) <= 6  # corrupt, text, empty, tiny, thin (+ truncated, perhaps)
    assert f"{len(errors)} of {len(paths)} inputs failed" in result.stderr


# ---------------------------------------------------------------- command line


@pytest.fixture
def good_folder(tmp_path):
    (tmp_path / "sub").mkdir()
    write_rgb(tmp_path / "one.png", textured(3, 64, 64))
    write_rgb(tmp_path / "sub" / "two.jpg", textured(4, 48, 96))
    write_rgb(tmp_path / "sub" / "three.png", textured(5, 32, 40))
    (tmp_path / "sub" / "readme.txt").write_text("not an image, skipped in folders")
    return tmp_path


@pytest.mark.slow
def test_cli_formats_and_output(good_folder, export, tmp_path_factory):
    runner = CliRunner()
    result = runner.invoke(main, ["predict", str(good_folder), "--model", export, "--format", "csv"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "path,label,sharp,gaussian,motion,defocus,scale,tiles,area_sharp,area_gaussian,area_motion,area_defocus,error"
    assert len(lines) == 4
    rows = [line.split(",") for line in lines[1:]]
    assert [os.path.basename(r[0]) for r in rows] == ["one.png", "three.png", "two.jpg"]
    for r in rows:
        assert math.isclose(sum(float(x) for x in r[2:6]), 1.0, abs_tol=1e-5)
        assert r[1] in CLASS_NAMES and r[6] == "1" and r[12] == ""
        area = [float(x) for x in r[8:12]]
        assert math.isclose(sum(area), 1.0, abs_tol=1e-3) and all(a * int(r[7]) == pytest.approx(round(a * int(r[7])), abs=1e-3) for a in area)
    assert [int(r[7]) for r in rows] == [4, 2, 6]  # 64x64: 2x2; 32x40: 1x2; 48x96: 2x3

    out = tmp_path_factory.mktemp("out") / "res.json"
    result = runner.invoke(main, ["predict", str(good_folder / "*.png"), str(good_folder / "sub"), "--model", export, "--format", "json", "--output", str(out)])
    assert result.exit_code == 0, result.output
    records = json.loads(out.read_text())
    assert [os.path.basename(r["path"]) for r in records] == ["one.png", "three.png", "two.jpg"]
    for r in records:
        check_answer(r)

    result = runner.invoke(main, ["predict", str(good_folder / "one.png"), "--model", export])
    assert result.exit_code == 0
    assert result.stdout.splitlines()[0].split()[:3] == ["path", "label", "sharp"]
    assert "one.png" in result.stdout

    for flags, full in (([], False), (["--full"], True)):  # --full: every tile, the export's 8 views
        result = runner.invoke(main, ["predict", str(good_folder / "one.png"), "--model", export, "--format", "json", *flags])
        [record] = json.loads(result.stdout)
        [expected] = predict(str(good_folder / "one.png"), model=export, full=full)
        for name in CLASS_NAMES:
            assert record["probabilities"][name] == pytest.approx(expected["probabilities"][name], abs=1e-6)


@pytest.mark.slow
def test_cli_scale_and_model_errors(good_folder, export, tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["predict", str(good_folder / "one.png"), "--model", export, "--scale", "0"])
    assert result.exit_code == 2 and "scale must be" in result.output
    result = runner.invoke(main, ["predict", str(good_folder / "one.png"), "--model", str(tmp_path / "nomodel")])
    assert result.exit_code == 1 and "does not exist" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    result = runner.invoke(main, ["predict", str(good_folder / "one.png"), "--model", export, "--scale", "2", "--format", "json"])
    assert result.exit_code == 0, result.output
    [record] = json.loads(result.stdout)
    assert record["scale"] == 2.0 and record["tiles"] == 1  # 64 px / 2 = 32 px: one tile


@pytest.mark.slow
def test_blur_map_written_with_expected_size(tmp_path, export):
    photo = write_rgb(tmp_path / "photo.png", textured(7, 96, 160))
    out = tmp_path / "maps" / "map.png"
    result = CliRunner().invoke(main, ["predict", photo, "--model", export, "--map", str(out)])
    assert result.exit_code == 0, result.output
    assert out.stat().st_size > 1000
    written = cv2.imread(str(out))
    assert written.shape[:2] == map_size(96, 160)
    assert [p.name for p in out.parent.iterdir()] == ["map.png"]  # no temporary left behind
    # the photograph is visible (unchanged outside the overlay where confidence is low)
    assert written[:96, :160].std() > 10


@pytest.mark.slow
def test_python_api_arrays_and_repeated_calls(export):
    gray16 = (textured(8, 64, 64)[:, :, 0].astype(np.uint16) * 257)
    rgba = np.dstack([textured(9, 70, 50), np.full((70, 50), 255, np.uint8)])
    records = blurnet.predict([textured(3, 64, 64), gray16, rgba, np.zeros((10, 10, 3), np.uint8)], model=export)
    assert [r["path"] for r in records] == ["<array 0>", "<array 1>", "<array 2>", "<array 3>"]
    check_answer(records[0], tiles=4)
    check_answer(records[1], tiles=4)
    check_answer(records[2], tiles=6)
    assert "at least 32 px" in records[3]["error"]
    # `blurnet.predict` is still the function once its module `blurnet.prediction` has been imported
    assert callable(blurnet.predict) and blurnet.predict.__module__ == "blurnet"
    again = blurnet.predict(textured(3, 64, 64), model=export)
    assert again[0]["probabilities"] == pytest.approx(records[0]["probabilities"], abs=1e-5)


# ---------------------------------------------------------------- scale: 4x photograph, 4x blur


def _fit_strength(scaled, reference, params, ranges_low, ranges_high, margin=40):
    """The blur strength whose PSF applied to `reference` best matches `scaled` (least squares)."""
    rng = np.random.default_rng(0)
    grid = np.linspace(ranges_low * 0.5, ranges_high * 1.5, 61)
    target = scaled[margin:-margin, margin:-margin].astype(np.float32)
    errors = []
    for t in grid:
        candidate = degrade(reference, BlurParams(params.label, float(t), params.angle, 0.0), rng)
        errors.append(float(np.mean((candidate[margin:-margin, margin:-margin] - target) ** 2)))
    return float(grid[int(np.argmin(errors))])


@pytest.mark.slow
def test_auto_scale_brings_4x_blur_back_into_spec_range(export):
    """A bundled photograph, upscaled 4x and blurred with PSFs 4x the SPEC ranges: auto scale undoes it."""
    photo = read_image(dict(bundled_photo_paths())["coffee"])  # 400 x 600
    reference = cv2.resize(photo, (1024, 683), interpolation=cv2.INTER_CUBIC)[200:456]  # 256 x 1024, longer side = reference
    big = cv2.resize(reference, (4096, 1024), interpolation=cv2.INTER_CUBIC)  # upscaled four times
    spec, four = BlurRanges(), BlurRanges().scaled(4)
    cases = [
        BlurParams(1, 2.0, 0.0, 0.0),  # gaussian sigma 2 at the SPEC scale
        BlurParams(2, 12.0, 30.0, 0.0),  # motion length 12
        BlurParams(3, 4.0, 0.0, 0.0),  # defocus radius 4
    ]
    rng = np.random.default_rng(1)
    for params in cases:
        name = params.class_name
        low, high = spec.strength_range(name)
        big_params = BlurParams(params.label, params.strength * 4, params.angle, 0.0)
        lo4, hi4 = four.strength_range(name)
        blurred = degrade(big, big_params, rng).round().astype(np.uint8)
        # as shot, the blur measured against the sharp 4x photograph is 4x the strength: out of SPEC range
        as_shot = _fit_strength(blurred[:256], big[:256], params, lo4, hi4)
        assert as_shot == pytest.approx(big_params.strength, rel=0.1), (name, as_shot)
        assert as_shot > high
        prepared = prepare(blurred, 32, "auto")
        assert prepared.scale == pytest.approx(4.0, rel=0.01)
        assert prepared.image.shape[:2] == (256, 1024)
        assert low <= big_params.strength / prepared.scale <= high
        # measured: the blur the model sees, fitted against the sharp reference at SPEC scale
        measured = _fit_strength(prepared.image, reference, params, low, high)
        print(f"{name}: true {params.strength:g}, measured {measured:.3f} after scale {prepared.scale:g}")
        assert measured == pytest.approx(params.strength, rel=0.25), (name, measured)
        assert low <= measured <= high
        if name == "gaussian":
            [record] = predict(blurred, model=export)  # end to end through the model
            assert len(prepared.boxes) == 8 * 32
            check_answer(record)
            assert 1 <= record["tiles"] <= 8 * 32  # blurred flat tiles are ignored
            assert record["scale"] == pytest.approx(4.0, rel=0.01)


# ---------------------------------------------------------------- scale pyramid and the whole-photo decision


def test_choose_level_prefers_the_finest_confident_level():
    from blurnet.classify import choose_level

    sharp, blurred, unsure = np.array([0.9, 0.05, 0.03, 0.02]), np.array([0.02, 0.9, 0.05, 0.03]), np.array([0.45, 0.5, 0.03, 0.02])
    assert choose_level([sharp, sharp, sharp]) == 0  # no level blurred: the working scale answers
    assert choose_level([sharp, sharp, blurred]) == 2  # blur too large for the working scale
    assert choose_level([blurred, blurred, sharp]) == 0  # the finest of the confident levels
    assert choose_level([unsure, blurred, blurred]) == 1  # 0.55 is not within 0.1 of 0.98
    assert choose_level([np.array([0.12, 0.8, 0.05, 0.03]), blurred]) == 0  # 0.88 is within 0.1 of 0.98
    # 0.49 is within 0.1 of 0.58 but not blurred: the blurred level answers, not a sharp one
    assert choose_level([np.array([0.51, 0.30, 0.10, 0.09]), np.array([0.42, 0.45, 0.08, 0.05])]) == 1
    assert choose_level([blurred, blurred, blurred], textured=[False, True, True]) == 1  # all flat: no say
    assert choose_level([blurred, sharp], textured=[False, False]) == 0  # every level flat: all count
    assert choose_level([blurred, sharp, sharp], textured=[False, True, True]) == 1  # sharp, from a level with a say


def test_the_area_counts_textured_tiles_by_their_own_answer():
    probs = np.array([[0.9, 0.1, 0, 0], [0.1, 0.8, 0.1, 0], [0.2, 0.1, 0.6, 0.1], [0.1, 0.1, 0.1, 0.7], [0.7, 0.1, 0.1, 0.1]])
    np.testing.assert_allclose(level_answer(probs, [10, 10, 10, 10, 1.0])[1], [0.25, 0.25, 0.25, 0.25])
    np.testing.assert_allclose(level_answer(probs, np.full(5, 1.0))[1], [0.4, 0.2, 0.2, 0.2])  # all flat: every tile


def test_pyramid_levels_and_their_scales():
    from blurnet.classify import pyramid

    levels = pyramid(np.zeros((300, 2000, 3), np.uint8), 96, "auto")
    assert [round(level.scale, 4) for level in levels] == [1.9531, 3.9062, 7.8125]
    assert [level.image.shape[:2] for level in levels] == [(154, 1024), (77, 512), (38, 256)]
    assert len(pyramid(np.zeros((100, 100, 3), np.uint8), 32, 1.0)) == 2  # 25 px at 4x smaller: skipped


@pytest.mark.slow
@pytest.mark.parametrize("name, params", [
    ("gaussian", BlurParams(1, 14.0)),  # sigma 14: 4 x the range's 3.5
    ("motion", BlurParams(2, 84.0, 30.0)),  # 84 px streak: 4 x the range's 21
    ("defocus", BlurParams(3, 28.0)),  # radius 28: 4 x the range's 7; every tile is flat at the working scale
    # The realistic families at the same sizes: a camera-shake trajectory drawn 84 px wide (motion 0.94), a real-lens
    # aperture of circumradius 28 (defocus 0.82). Of the shapes psf_seed 0 to 2 draw, the shakes all read motion (0.80
    # to 0.94); the second lens reads gaussian 0.49 against defocus 0.48, the other two defocus.
    ("motion", BlurParams(2, 84.0, family="shake", psf_seed=0, extent=84.0)),
    ("defocus", BlurParams(3, 28.0, family="lens", psf_seed=0, extent=28.0)),
])
def test_blur_far_beyond_the_training_range_is_recognised(name, params):
    """A held-out bundled photograph, upscaled 2x, blurred all over with PSFs 4 times the range maxima (the SPEC's bound).

    At the working scale most tiles are flat (so every tile counts) or out of range, and the pyramid's coarser
    levels bring the blur back into range. The bundled model must name the class, and not call it sharp.
    """
    path = dict((p.stem, p) for _, p in bundled_photo_paths())["camera"]
    photo = cv2.resize(read_image(path), None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
    assert photo.shape[:2] == (1024, 1024)
    blurred = degrade(photo.astype(np.float32), dataclasses.replace(params, noise_sigma=1.0), np.random.default_rng(0))
    (record,) = predict(blurred.astype(np.uint8))
    check_answer(record)
    assert record["label"] == name, record
    assert record["probabilities"]["sharp"] < 0.25, record


# ---------------------------------------------------------------- the default (fast) answer: tile budget, views, reduced JPEGs


class MeanBrightness:
    """A stand-in model on 32 px tiles: a tile's answer depends on its mean; counts tiles and views it is asked for."""

    image_size = 32

    def __init__(self):
        self.calls = []  # (tiles, views) per call; views None for a plain call

    def answer(self, tiles):
        bright = np.asarray(tiles).mean(axis=(1, 2, 3)) / 255.0
        return np.stack([1 - bright, bright, np.zeros_like(bright), np.zeros_like(bright)], axis=1)

    def __call__(self, tiles):
        self.calls.append((len(tiles), None))
        return self.answer(tiles)

    def predict_tiles(self, tiles, views):
        self.calls.append((len(tiles), views))
        return self.answer(tiles)


def test_select_tiles_samples_in_proportion_to_texture():
    from blurnet.classify import select_tiles

    textures = np.array([1.0, 10.0, 2.0, 30.0, 20.0])
    chosen, weights, area_weights = select_tiles(textures)  # no budget: every textured tile, weighted by texture
    assert chosen.tolist() == [1, 3, 4] and weights.tolist() == [10.0, 30.0, 20.0] and area_weights.tolist() == [1, 1, 1]
    chosen, weights, _ = select_tiles(np.full(7, 1.0), budget=3)  # all flat: evenly spread, equal weights
    assert chosen.tolist() == [0, 3, 6] and weights.tolist() == [1, 1, 1]
    textures = np.array([10.0] * 50 + [20.0] * 50)
    chosen, picks, area_weights = select_tiles(textures, budget=30)
    assert picks.sum() == 30 and len(chosen) == 30
    assert (chosen >= 50).sum() == 20  # twice the texture, twice the picks
    np.testing.assert_allclose((area_weights * (chosen < 50)).sum() / area_weights.sum(), 0.5)  # half of the tiles


def test_sampled_answer_estimates_the_full_one():
    from blurnet.classify import select_tiles, weighted_answer

    rng = np.random.default_rng(0)
    textures = rng.uniform(4, 40, 300)
    blurred = np.arange(300) % 3 == 0  # a third of the tiles, spread over the photograph
    probs = np.where(blurred[:, None], [0.1, 0.8, 0.05, 0.05], [0.85, 0.05, 0.05, 0.05])
    full_mean, full_area = weighted_answer(probs, textures, np.ones(300))
    chosen, picks, area_weights = select_tiles(textures, budget=24)
    mean, area = weighted_answer(probs[chosen], picks, area_weights)
    assert np.abs(mean - full_mean).max() < 0.08 and np.abs(area - full_area).max() < 0.1
    assert abs(area[1] - 1 / 3) < 0.1


def test_default_answer_spends_the_tile_budget_and_one_view_and_full_spends_all(tmp_path):
    from blurnet.classify import FAST_VIEWS, TILE_BUDGET

    rng = np.random.default_rng(5)
    ramp = np.linspace(0, 100, 1024)[None, :, None]  # the answer changes across the photograph
    # textured all over (768 tiles of 32 px), blur confidence about 0.45: clear of the 0.5 that decides the label
    photo = (rng.integers(0, 128, (768, 1024, 3)) + ramp).astype(np.uint8)
    model = MeanBrightness()
    fast = predict(photo, model=model)[0]
    assert {views for _, views in model.calls} == {FAST_VIEWS}
    assert [n for n, _ in model.calls] == [TILE_BUDGET] * 3  # one call a pyramid level, no more than the budget
    model.calls.clear()
    full = predict(photo, model=model, full=True)[0]
    assert {views for _, views in model.calls} == {None}  # the model's own views
    assert sum(n for n, _ in model.calls) == 768 + 192 + 48  # every (textured) tile of the three levels
    assert fast["label"] == full["label"] and fast["tiles"] <= TILE_BUDGET and full["tiles"] == 768
    assert abs(fast["probabilities"]["gaussian"] - full["probabilities"]["gaussian"]) < 0.02


def test_large_jpegs_are_decoded_reduced_with_the_same_scale_and_mask_size(tmp_path, monkeypatch):
    import data_pipeline.sources as sources

    reductions = {}  # by file name: photographs may be decoded ahead, in any order
    real = sources.decode_reduced

    def recording(data, reduction, name="<bytes>"):
        reductions[os.path.basename(name)] = reduction
        return real(data, reduction, name)

    monkeypatch.setattr("blurnet.inputs.decode_reduced", recording)
    photo = cv2.resize(textured_image(6, 300, 400), (2400, 1800), interpolation=cv2.INTER_CUBIC)
    cv2.imwrite(str(tmp_path / "big.jpg"), photo[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
    cv2.imwrite(str(tmp_path / "big.png"), photo[:, :, ::-1])
    model = MeanBrightness()
    paths = [str(tmp_path / "big.jpg"), str(tmp_path / "big.png")]
    jpeg, png = predict(paths, model=model, mask_path=tmp_path / "m.png", full=True)  # every tile: decoding alone differs
    assert reductions == {"big.jpg": 2, "big.png": 1}  # scale 2400 / 1024 = 2.34: the JPEG decoded 2 times smaller, the PNG in full
    assert jpeg["scale"] == png["scale"] == pytest.approx(2400 / 1024)
    assert cv2.imread(jpeg["mask"], cv2.IMREAD_UNCHANGED).shape == (1800, 2400)  # the photograph's size
    assert jpeg["label"] == png["label"]
    for name in CLASS_NAMES:
        assert jpeg["probabilities"][name] == pytest.approx(png["probabilities"][name], abs=0.02)


def test_load_for_scale_reports_the_photograph_size_after_exif_rotation(tmp_path):
    from blurnet.inputs import load_for_scale
    from tests.test_sources import rotated_jpeg

    photo = cv2.resize(textured_image(7, 90, 120), (2400, 1800), interpolation=cv2.INTER_CUBIC)
    (tmp_path / "turned.jpg").write_bytes(rotated_jpeg(photo, IMWRITE_JPEG_QUALITY=90))  # stored 2400 wide, shown 1800 wide
    image, reduction, shape = load_for_scale(str(tmp_path / "turned.jpg"), "auto")
    assert (reduction, shape, image.shape) == (2, (2400, 1800), (1200, 900, 3))
    image, reduction, shape = load_for_scale(str(tmp_path / "turned.jpg"), 9.0)
    assert (reduction, shape, image.shape) == (8, (2400, 1800), (300, 225, 3))
    image, reduction, shape = load_for_scale(str(tmp_path / "turned.jpg"), 1.5)
    assert (reduction, shape, image.shape) == (1, (2400, 1800), (2400, 1800, 3))
    with pytest.raises(ImageReadError, match="cannot read"):
        load_for_scale(str(tmp_path / "missing.jpg"), "auto")
    # Nearly square: decoded 2 times smaller it is square, so only the EXIF tag tells the photograph's sides.
    square = cv2.resize(textured_image(8, 90, 90), (2050, 2049), interpolation=cv2.INTER_CUBIC)
    (tmp_path / "square.jpg").write_bytes(rotated_jpeg(square, IMWRITE_JPEG_QUALITY=90))  # stored 2049 x 2050 (h x w)
    image, reduction, shape = load_for_scale(str(tmp_path / "square.jpg"), "auto")
    assert (reduction, shape, image.shape) == (2, (2050, 2049), (1025, 1025, 3))


@pytest.mark.slow
def test_a_replaced_export_is_loaded_again_even_with_its_old_file_times(export, tmp_path):
    import shutil

    from blurnet.prediction import load_model

    folder = Path(shutil.copytree(export, tmp_path / "m"))
    first = load_model(folder)
    assert load_model(folder) is first and first.views == 1  # cached
    replacement = Path(shutil.copytree(folder, tmp_path / "new", copy_function=shutil.copy2))  # times kept, as cp -p
    meta = json.loads((replacement / "blurnet.json").read_text())
    (replacement / "blurnet.json").write_text(json.dumps({**meta, "test_time_views": 4}))
    old = (folder / "blurnet.json").stat()
    os.utime(replacement / "blurnet.json", ns=(old.st_atime_ns, old.st_mtime_ns))
    shutil.rmtree(folder)
    replacement.rename(folder)
    second = load_model(folder)
    assert second is not first and second.views == 4


def test_a_broken_model_found_under_full_raises_instead_of_an_error_per_photograph(tmp_path):
    from blurnet.errors import NotAnExportError

    class BrokenHead(MeanBrightness):
        """Builds its network only when a tile is answered with the parameter head, and its weights do not fit."""
        has_parameters, views = True, 8

        def answer_tiles(self, tiles, views):
            raise NotAnExportError("weights do not fit")

    photo = write_rgb(tmp_path / "a.png", textured(1, 64, 64))
    with pytest.raises(NotAnExportError, match="weights do not fit"):
        predict([photo, photo], model=BrokenHead(), full=True)
    with pytest.raises(NotAnExportError, match="weights do not fit"):
        predict([photo], model=BrokenHead())


def test_float_arrays_a_little_over_one_are_read_on_the_0_to_1_scale():
    from blurnet.inputs import array_to_rgb8

    image = np.full((40, 40, 3), 0.5, np.float32)
    image[0, 0] = 1.0000001  # what a filter leaves
    assert array_to_rgb8(image).mean() == pytest.approx(128.0, abs=0.2)
    image[1, 1] = 1.3  # sharpened past white: clipped there
    out = array_to_rgb8(image)
    assert out[1, 1].tolist() == [255, 255, 255] and out[5, 5].tolist() == [128, 128, 128]
    assert array_to_rgb8(np.full((40, 40), 100.0, np.float32)).mean() == 100.0  # a 0..255 image stays as it is


def test_a_device_or_pipe_named_as_input_gets_an_error_record(tmp_path):
    from blurnet.inputs import load_for_scale

    with pytest.raises(ImageReadError, match="not a regular file"):
        load_for_scale(os.devnull, "auto")  # /dev/zero or a pipe would be read forever
    record = predict([os.devnull], model=MeanBrightness())[0]
    assert record == {"path": os.devnull, "error": f"{os.devnull}: not a regular file (a device, pipe or socket)"}


def test_a_runtime_file_given_by_its_path_is_loaded_once(tmp_path, monkeypatch):
    import blurnet.prediction
    import blurnet.runtimes

    (tmp_path / "blurnet.onnx").write_bytes(b"network")
    (tmp_path / "blurnet.json").write_text("{}")
    loads = []
    monkeypatch.setattr(blurnet.runtimes, "load_runtime", lambda path: loads.append(path) or object())
    monkeypatch.setattr(blurnet.prediction, "_MODEL_CACHE", {})
    for model in (tmp_path / "blurnet.onnx", tmp_path / "blurnet.onnx", tmp_path, tmp_path):
        blurnet.prediction.load_model(model)
    assert len(loads) == 2  # once by the file's path, once by its folder's
    (tmp_path / "blurnet.json").write_text('{"image_size": 64}')  # edited: loaded again
    blurnet.prediction.load_model(tmp_path / "blurnet.onnx")
    assert len(loads) == 3


def test_cli_refuses_an_output_onto_an_input_before_loading_the_model(tmp_path):
    photo = write_rgb(tmp_path / "a.png", textured(2, 48, 48))
    done = CliRunner().invoke(main, ["predict", photo, "--model", str(tmp_path / "no-such-model"), "--output", photo])
    assert done.exit_code == 2 and "would overwrite the input photograph" in done.output, done.output
    assert "no-such-model" not in done.output


def test_tiles_are_cut_a_batch_at_a_time(monkeypatch, tmp_path):
    from blurnet.classify import MAX_TILES_PER_BATCH, Prepared

    cut, tiles = [], Prepared.tiles
    monkeypatch.setattr(Prepared, "tiles", lambda self, boxes=None: cut.append(len(boxes)) or tiles(self, boxes))
    photo = np.random.default_rng(6).integers(0, 256, (384, 512, 3)).astype(np.uint8)  # 192 tiles of 32 px
    predict(photo, model=MeanBrightness(), full=True, map_path=tmp_path / "map.png")
    # float32 tiles of every box at once would take 12 bytes a pixel of each: gigabytes for a large map
    assert max(cut) == MAX_TILES_PER_BATCH and sum(cut) == 192 + 48 + 12 + len(map_boxes(384, 512, 32))


@pytest.mark.parametrize("height, width", [(1001, 777), (333, 515), (640, 480)])
def test_a_coarser_level_s_map_tiles_cover_the_working_image_to_its_edges(height, width):
    from blurnet.classify import pyramid
    from blurnet.prediction import _onto

    levels = pyramid(np.zeros((height, width, 3), np.uint8), 32, scale=1)
    working = levels[0]
    for level in levels[1:]:
        covered = np.zeros(working.image.shape[:2], bool)
        for top, left, th, tw in _onto(map_boxes(*level.image.shape[:2], 32), level, working):
            covered[top : top + th, left : left + tw] = True
        assert covered.all(), (level.scale, level.image.shape, np.argwhere(~covered)[:1])


def test_the_csv_names_each_photograph_s_map_and_mask_or_why_they_failed():
    import csv
    import io

    from blurnet.prediction import CSV_FIELDS, format_records

    probabilities = dict(zip(CLASS_NAMES, (0.7, 0.1, 0.1, 0.1)))
    done = {"path": "a.jpg", "label": "sharp", "probabilities": probabilities, "scale": 1.0, "tiles": 3,
            "area": probabilities, "map": "maps/m-1.png", "mask": "maps/k-1.png"}
    failed = {**done, "path": "b.jpg", "map_error": "cannot write maps/m-2.png (IsADirectoryError: ...)"}
    del failed["map"], failed["mask"]
    rows = list(csv.DictReader(io.StringIO(format_records([done, failed], "csv"))))
    assert [(r["path"], r["map"], r["mask"], r["map_error"]) for r in rows] == [
        ("a.jpg", "maps/m-1.png", "maps/k-1.png", ""), ("b.jpg", "", "", "cannot write maps/m-2.png (IsADirectoryError: ...)")]
    plain = format_records([{k: v for k, v in done.items() if k not in ("map", "mask")}], "csv")
    assert plain.splitlines()[0] == ",".join(CSV_FIELDS)  # without maps, the columns are as before


def test_a_ctrl_c_keeps_the_records_of_the_photographs_already_classified(good_folder, tmp_path, monkeypatch):
    import blurnet.prediction as prediction_module
    from blurnet.prediction import PredictInterrupted

    done = []

    def stop_after_two(n):  # a Ctrl-C once the second photograph is classified
        done.append(n)
        if len(done) == 2:
            raise KeyboardInterrupt

    with pytest.raises(PredictInterrupted, match="interrupted after 2 of 3 inputs") as stopped:
        predict(str(good_folder), model=MeanBrightness(), progress=stop_after_two)
    assert [Path(r["path"]).name for r in stopped.value.records] == ["one.png", "three.png"] and stopped.value.total == 3
    assert all("label" in r for r in stopped.value.records)

    records = stopped.value.records  # the command line writes them, then fails
    monkeypatch.setattr(prediction_module, "load_model", lambda model=None: MeanBrightness())

    def interrupted(paths, model, scale, **kwargs):
        raise PredictInterrupted(records, 3)

    monkeypatch.setattr(prediction_module, "predict", interrupted)
    monkeypatch.setattr("blurnet.cli._start_tensorflow", lambda: None)
    out = tmp_path / "results.csv"
    result = CliRunner().invoke(main, ["predict", str(good_folder), "--format", "csv", "--output", str(out)])
    assert result.exit_code == 1 and f"interrupted after 2 of 3 inputs; their results are in {out}" in result.output
    assert [row.split(",")[0] for row in out.read_text().splitlines()[1:]] == [r["path"] for r in records]


def test_maps_inside_an_input_folder_are_refused_before_any_work(good_folder, monkeypatch):
    import blurnet.prediction as prediction_module

    monkeypatch.setattr(prediction_module, "load_model", lambda model=None: pytest.fail("the model loaded"))
    for option in ("--map", "--mask"):
        result = CliRunner().invoke(main, ["predict", str(good_folder / "sub"), option, str(good_folder / "sub" / "maps" / "m.png")])
        assert result.exit_code == 2, result.output
        assert f"{option} '{good_folder / 'sub' / 'maps' / 'm.png'}' is inside the input folder '{good_folder / 'sub'}'" in result.output
    assert not (good_folder / "sub" / "maps").exists()
