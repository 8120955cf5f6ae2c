"""Blur maps and masks: half-overlapping map tiles, the per-pixel blur probability, `--mask`."""
import json

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

import blurnet.prediction as predict_module
from blurnet.blurmap import blur_mask, blur_probability_map, resize_probability
from blurnet.cli import main
from blurnet.classify import map_boxes, tile_boxes
from blurnet.prediction import check_outputs_spare_inputs, predict


class BrightIsBlurred:
    """A stand-in model on 32 px tiles: a tile whose mean is over 128 is `gaussian` (blurred), else `sharp`."""

    image_size = 32

    def __init__(self):
        self.tiles = 0

    def __call__(self, tiles):
        tiles = np.asarray(tiles)
        self.tiles += len(tiles)
        bright = tiles.mean(axis=(1, 2, 3)) > 128
        out = np.zeros((len(tiles), 4), np.float32)
        out[:, 0] = np.where(bright, 0.0, 1.0)
        out[:, 1] = np.where(bright, 1.0, 0.0)
        return out


def half_bright(height, width, bright_width):
    """Columns < `bright_width` at 200 (flat), the rest dark noise around 50."""
    image = np.random.default_rng(0).integers(30, 70, (height, width, 3)).astype(np.uint8)
    image[:, :bright_width] = 200
    return image


def test_map_boxes_overlap_by_half_tile():
    assert map_boxes(64, 64, 32) == [(t, l, 32, 32) for t in (0, 16, 32) for l in (0, 16, 32)]
    # 70 px: 4 starts spread evenly over 0..38 (stride <= 16)
    assert map_boxes(32, 70, 32) == [(0, l, 32, 32) for l in (0, 13, 25, 38)]
    # a side no longer than a tile: one tile spanning it
    assert map_boxes(20, 32, 32) == [(0, 0, 20, 32)]
    assert map_boxes(40, 33, 32) == [(0, 0, 32, 32), (0, 1, 32, 32), (8, 0, 32, 32), (8, 1, 32, 32)]
    with pytest.raises(ValueError, match="got 1"):
        map_boxes(64, 64, 1)


@pytest.mark.parametrize("shape", [(64, 96), (70, 101), (32, 200), (150, 47)])
def test_map_boxes_cover_every_pixel_with_stride_at_most_half_a_tile(shape):
    h, w = shape
    boxes = map_boxes(h, w, 32)
    covered = np.zeros(shape, int)
    for t, l, th, tw in boxes:
        assert 0 <= t and t + th <= h and 0 <= l and l + tw <= w
        covered[t : t + th, l : l + tw] += 1
    assert covered.min() >= 1
    for axis in (0, 1):
        starts = sorted({b[axis] for b in boxes})
        assert all(0 < b - a <= 16 for a, b in zip(starts, starts[1:]))
    assert len(boxes) >= len(tile_boxes(h, w, 32))


def test_blur_probability_map_averages_overlapping_tiles():
    boxes = [(0, 0, 2, 2), (0, 1, 2, 2)]  # a 2 x 3 image, the tiles share column 1
    probabilities = [[0.8, 0.2, 0.0, 0.0], [0.2, 0.0, 0.5, 0.3]]  # blur 0.2 and 0.8
    got = blur_probability_map((2, 3), boxes, probabilities)
    assert got.dtype == np.float32 and got.shape == (2, 3)
    np.testing.assert_allclose(got, [[0.2, 0.5, 0.8], [0.2, 0.5, 0.8]], atol=1e-6)
    # uncovered pixels get 0
    np.testing.assert_allclose(blur_probability_map((3, 2), [(0, 0, 2, 2)], [[0.0, 1.0, 0.0, 0.0]]), [[1, 1], [1, 1], [0, 0]])
    with pytest.raises(ValueError, match=r"\(1, 4\)"):
        blur_probability_map((2, 3), boxes, [[1.0, 0.0, 0.0, 0.0]])


def test_mask_threshold_and_resize():
    np.testing.assert_array_equal(blur_mask(np.array([[0.2, 0.5, 0.9]])), [[0, 255, 255]])
    big = resize_probability(np.array([[0.0, 1.0]], np.float32), 4, 8)
    assert big.shape == (4, 8) and big.dtype == np.float32
    assert big.min() >= 0 and big.max() <= 1 and big[0, 0] == 0 and big[0, -1] == 1


def test_predict_mask_matches_the_model_and_leaves_the_answer_alone(tmp_path):
    image = half_bright(64, 96, 48)
    model = BrightIsBlurred()
    plain = predict(image, model=model)
    tiles_plain = model.tiles
    [record] = predict(image, model=model, mask_path=tmp_path / "mask.png")
    assert record.pop("mask") == str(tmp_path / "mask.png")
    assert record == plain[0]  # the whole-photo answer does not use the map tiles
    assert model.tiles - tiles_plain == tiles_plain + len(map_boxes(64, 96, 32))
    mask = cv2.imread(str(tmp_path / "mask.png"), cv2.IMREAD_UNCHANGED)
    assert mask.shape == (64, 96) and mask.dtype == np.uint8
    # map tiles start at columns 0, 16, 32, 48, 64: those starting at 0 and 16 are bright (blurred), the one at 32 is
    # half bright (mean 125: sharp); columns 32..47 are covered by one of each, 0.5 -> white
    expected = np.zeros((64, 96), np.uint8)
    expected[:, :48] = 255
    np.testing.assert_array_equal(mask, expected)
    assert [p.name for p in tmp_path.iterdir()] == ["mask.png"]  # no temporary file left behind


def test_cli_mask_at_the_original_size_one_file_per_photo(tmp_path, monkeypatch):
    model = BrightIsBlurred()
    monkeypatch.setattr(predict_module, "load_model", lambda model_dir=None: model)
    photos = []
    for name in ("a", "b"):
        photos.append(str(tmp_path / f"{name}.png"))
        assert cv2.imwrite(photos[-1], half_bright(128, 192, 96))
    out = tmp_path / "out" / "mask.png"
    runner = CliRunner()
    result = runner.invoke(main, ["predict", *photos, "--scale", "2", "--mask", str(out), "--format", "json"])
    assert result.exit_code == 0, result.output
    records = json.loads(result.stdout)
    assert [r["mask"] for r in records] == [str(out.with_name("mask-1.png")), str(out.with_name("mask-2.png"))]
    for r in records:
        mask = cv2.imread(r["mask"], cv2.IMREAD_UNCHANGED)
        assert mask.shape == (128, 192)  # the photograph's size, not the working scale's (64 x 96)
        assert set(np.unique(mask)) == {0, 255}
        # white = blurred = the bright half; linear upsampling moves the edge by at most 2 px
        assert (mask[:, :94] == 255).all() and (mask[:, 98:] == 0).all()
    # one photograph: the name as given
    result = runner.invoke(main, ["predict", photos[0], "--mask", str(tmp_path / "one.png"), "--map", str(tmp_path / "map.png")])
    assert result.exit_code == 0, result.output
    assert cv2.imread(str(tmp_path / "one.png"), cv2.IMREAD_UNCHANGED).shape == (128, 192)
    assert cv2.imread(str(tmp_path / "map.png")) is not None


def test_maps_are_written_as_each_photograph_is_answered_and_numbered_by_input(tmp_path):
    photos = [str(tmp_path / "a.png"), str(tmp_path / "missing.png"), str(tmp_path / "c.png")]
    for path in photos[::2]:
        assert cv2.imwrite(path, half_bright(64, 96, 48))
    out = tmp_path / "maps" / "m.png"
    seen = []  # after each record: the maps on disk (one photograph's working images at a time, not all until the end)
    records = predict(photos, model=BrightIsBlurred(), map_path=out, mask_path=tmp_path / "masks" / "k.png",
                      progress=lambda n: seen.append(sorted(p.name for p in out.parent.glob("*.png"))))
    assert seen == [["m-1.png"], ["m-1.png"], ["m-1.png", "m-3.png"]]  # the third input's map is m-3, as its row
    assert [r.get("map") for r in records] == [str(out.with_name("m-1.png")), None, str(out.with_name("m-3.png"))]
    assert [r.get("mask") for r in records] == [str(tmp_path / "masks" / "k-1.png"), None, str(tmp_path / "masks" / "k-3.png")]
    assert "error" in records[1] and "map_error" not in records[0]


def test_outputs_never_overwrite_an_input_photograph(tmp_path, monkeypatch):
    model = BrightIsBlurred()
    monkeypatch.setattr(predict_module, "load_model", lambda model_dir=None: model)
    photo = tmp_path / "photo.png"
    assert cv2.imwrite(str(photo), half_bright(64, 96, 48))
    other = tmp_path / "m-2.png"
    assert cv2.imwrite(str(other), half_bright(64, 96, 16))
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    runner = CliRunner()
    for flags, message in ((["--map", str(photo)], "--map"), (["--mask", str(photo)], "--mask"),
                           (["--output", str(photo)], "--output"), (["--map", str(tmp_path / "m.png")], "--map")):
        inputs = [str(photo)] + ([str(other)] if "m.png" in flags[-1] else [])  # two inputs: m-1.png, m-2.png
        result = runner.invoke(main, ["predict", *inputs, *flags])
        assert result.exit_code == 2, result.output
        assert f"{message} " in result.output and "would overwrite the input photograph" in result.output
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # nothing written, nothing lost
    with pytest.raises(ValueError, match="would overwrite the input photograph"):
        predict(str(tmp_path), model=model, map_path=tmp_path / "m.png")  # the folder holds m-2.png: the second map
    with pytest.raises(ValueError, match="--map and --mask would both write"):
        predict(str(photo), model=model, map_path=tmp_path / "x.png", mask_path=tmp_path / "x.png")
    for inputs, flags, shared in (([photo], ["--output", "r.png", "--map", "r.png"], "r.png"),
                                  ([photo, other], ["--output", "q-2.png", "--mask", "q.png"], "q-2.png")):  # masks q-1, q-2
        flags = [str(tmp_path / f) if f.endswith(".png") else f for f in flags]
        result = runner.invoke(main, ["predict", *map(str, inputs), *flags])
        assert result.exit_code == 2, result.output
        assert f"--output and {flags[2]} would both write {str(tmp_path / shared)!r}" in result.output, result.output
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    (tmp_path / "here").symlink_to(tmp_path)  # the same file by another path
    with pytest.raises(ValueError, match="--output and --map would both write"):
        check_outputs_spare_inputs([str(photo)], 1, output=tmp_path / "here" / "r.png", map_path=tmp_path / "r.png")


def test_a_map_that_cannot_be_written_fails_the_run_and_says_where(tmp_path, monkeypatch):
    model = BrightIsBlurred()
    monkeypatch.setattr(predict_module, "load_model", lambda model_dir=None: model)
    photo = tmp_path / "photo.png"
    assert cv2.imwrite(str(photo), half_bright(64, 96, 48))
    (tmp_path / "file").write_text("a file, not a folder")
    refused = CliRunner().invoke(main, ["predict", str(photo), "--map", str(tmp_path / "map.png"),
                                        "--mask", str(tmp_path / "file" / "mask.png"), "--format", "json"])
    assert refused.exit_code == 2 and "'file' is not a folder" in refused.output.replace(str(tmp_path) + "/", "")
    assert not (tmp_path / "map.png").exists()  # refused before any work
    import blurnet.blurmap

    def disk_full(*args):  # what no check beforehand can see
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(blurnet.blurmap, "write_blur_mask", disk_full)
    result = CliRunner().invoke(main, ["predict", str(photo), "--map", str(tmp_path / "map.png"),
                                       "--mask", str(tmp_path / "mask.png"), "--format", "json"])
    assert result.exit_code == 1, result.output
    [record] = json.loads(result.stdout)
    assert record["label"] in ("sharp", "gaussian") and record["map"] == str(tmp_path / "map.png")
    assert record["map_error"].startswith(f"cannot write {tmp_path / 'mask.png'} (OSError")
    assert "1 of 1 inputs failed" in result.stderr


def test_the_mask_of_a_photo_sized_map_takes_a_few_bytes_a_pixel():
    import tracemalloc

    from blurnet.blurmap import blur_mask

    probability = np.random.default_rng(0).random((2000, 2000), dtype=np.float32)  # 4 megapixels
    tracemalloc.start()
    mask = blur_mask(probability, 0.5)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert mask.dtype == np.uint8 and set(np.unique(mask).tolist()) == {0, 255}
    assert (mask == 255).mean() == pytest.approx(0.5, abs=0.01)
    assert peak < 3 * probability.size  # int64 intermediates would take 16 bytes a pixel


def test_the_map_and_mask_come_from_the_level_that_answered(tmp_path, monkeypatch):
    import blurnet.classify

    image = np.ascontiguousarray(np.tile(half_bright(128, 96, 48), (1, 2, 1)))  # 128 x 192
    monkeypatch.setattr(blurnet.classify, "choose_level", lambda means, textured=None: 1)  # as for blur beyond the ranges
    model = BrightIsBlurred()
    [plain] = predict(image, model=model)
    answer_tiles = model.tiles  # every level answers; the second one is chosen
    [record] = predict(image, model=model, map_path=tmp_path / "map.png", mask_path=tmp_path / "mask.png")
    assert plain["scale"] == record["scale"] == 2.0
    assert model.tiles - 2 * answer_tiles == len(map_boxes(64, 96, 32)) == 15  # the map tiles the 64 x 96 level
    blur_map = cv2.imread(str(tmp_path / "map.png"))
    mask = cv2.imread(str(tmp_path / "mask.png"), cv2.IMREAD_UNCHANGED)
    assert blur_map.shape == (128 + 28, 420, 3) and mask.shape == (128, 192)  # the working scale's map; the photograph's size
    # tile outlines (white, grey for flat tiles) run down the photograph every 32 columns: the half-size level's
    # 32 px tiles at a stride of 16, drawn twice as large (the working scale's own tiles would give every 16)
    drawn = blur_map[:128, :192]
    edge = ((drawn == 255).all(axis=2) | (drawn == 150).all(axis=2)).mean(axis=0) > 0.9
    assert np.flatnonzero(edge).tolist() == [0, 32, 63, 64, 95, 96, 127, 128, 159, 191]
    # At half the size, tiles start every 16 columns: the one at 0 is mostly bright (blurred), at 16 and 32 mostly
    # dark, at 48 mostly bright, at 64 dark; a column under one blurred and one sharp tile is white (0.5).
    white = (mask == 255).all(axis=0)
    assert white[:62].all() and not white[64:96].any() and white[98:158].all() and not white[160:].any()
