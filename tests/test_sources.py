import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from data_pipeline.sources import (
    ImageReadError,
    Photo,
    bundled_photo_paths,
    bundled_splits,
    decode_image,
    decode_reduced,
    describe_split,
    jpeg_size,
    load_photographs,
    looks_like_image,
    read_image,
    read_image_bytes,
    split_photographs,
    to_rgb8,
)


def test_to_rgb8_handles_gray_rgba_16bit_and_float():
    gray = np.full((4, 5), 200, np.uint8)
    assert to_rgb8(gray).shape == (4, 5, 3) and to_rgb8(gray)[0, 0].tolist() == [200, 200, 200]
    bgra = np.zeros((4, 5, 4), np.uint8)
    bgra[..., 0] = 10  # blue
    bgra[..., 2] = 30  # red
    assert to_rgb8(bgra)[0, 0].tolist() == [30, 0, 10]
    assert to_rgb8(np.full((2, 2), 65535, np.uint16))[0, 0].tolist() == [255] * 3
    assert to_rgb8(np.full((2, 2), 257 * 100, np.uint16))[0, 0, 0] == 100
    assert to_rgb8(np.full((2, 2, 3), 0.5, np.float32))[0, 0, 0] == 128


def test_read_image_png_16bit_and_gray(tmp_path):
    img16 = (np.arange(64 * 64, dtype=np.uint32).reshape(64, 64) * 16).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "a.png"), img16)
    out = read_image(tmp_path / "a.png")
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    assert out[-1, -1, 0] == round(int(img16[-1, -1]) / 257)


def rotated_jpeg(image: np.ndarray, **params) -> bytes:
    """`image` as a JPEG with an EXIF Orientation=6 (rotate 90 degrees clockwise) tag."""
    ok, jpg = cv2.imencode(".jpg", image, [int(k) for kv in params.items() for k in (getattr(cv2, kv[0]), kv[1])])
    data = bytes(jpg)
    exif = (b"Exif\x00\x00" + b"MM\x00\x2a\x00\x00\x00\x08" + b"\x00\x01" + b"\x01\x12\x00\x03\x00\x00\x00\x01\x00\x06\x00\x00" + b"\x00\x00\x00\x00")
    app1 = b"\xff\xe1" + (len(exif) + 2).to_bytes(2, "big") + exif
    return data[:2] + app1 + data[2:]


def test_exif_orientation_is_applied(tmp_path):
    # A 16x32 JPEG with an EXIF Orientation=6 (rotate 90 CW) tag becomes 32x16.
    (tmp_path / "r.jpg").write_bytes(rotated_jpeg(np.zeros((16, 32, 3), np.uint8)))
    assert read_image(tmp_path / "r.jpg").shape == (32, 16, 3)


@pytest.mark.parametrize("progressive", [0, 1])
def test_jpeg_size_reads_the_frame_header(progressive):
    data = rotated_jpeg(np.zeros((123, 457, 3), np.uint8), IMWRITE_JPEG_PROGRESSIVE=progressive)
    assert jpeg_size(data) == (123, 457)  # as stored, before the EXIF rotation
    ok, png = cv2.imencode(".png", np.zeros((5, 6, 3), np.uint8))
    assert jpeg_size(bytes(png)) is None and jpeg_size(b"") is None
    assert jpeg_size(data[:20]) is None  # truncated before the frame header


@pytest.mark.parametrize("reduction", [1, 2, 4, 8])
def test_decode_reduced_shrinks_in_the_decoder_and_keeps_the_orientation(reduction):
    rng = np.random.default_rng(0)
    smooth = cv2.resize(rng.uniform(0, 255, (5, 9, 3)).astype(np.uint8), (457, 203), interpolation=cv2.INTER_CUBIC)
    data = rotated_jpeg(smooth, IMWRITE_JPEG_QUALITY=95)
    out = decode_reduced(data, reduction)
    assert out.shape == (-(-457 // reduction), -(-203 // reduction), 3) and out.dtype == np.uint8  # turned: 457 high
    full = cv2.rotate(smooth[:, :, ::-1], cv2.ROTATE_90_CLOCKWISE)  # RGB, turned as EXIF says
    expected = cv2.resize(full, out.shape[1::-1], interpolation=cv2.INTER_AREA)
    assert np.corrcoef(out.ravel(), expected.ravel())[0, 1] > 0.97  # the same picture, smaller
    ok, png = cv2.imencode(".png", smooth)
    assert decode_reduced(bytes(png), reduction).shape == (203, 457, 3)  # not a JPEG: decoded in full
    with pytest.raises(ImageReadError, match="not a readable image"):
        decode_reduced(data[:300], reduction)


@pytest.mark.parametrize("content, reason", [(b"", "empty"), (b"hello, not an image", "not a readable image")])
def test_bad_files_raise_image_read_error(tmp_path, content, reason):
    (tmp_path / "bad.png").write_bytes(content)
    with pytest.raises(ImageReadError, match=reason):
        read_image(tmp_path / "bad.png")
    with pytest.raises(ImageReadError, match="cannot read"):
        read_image(tmp_path / "missing.png")


@pytest.mark.parametrize("extension", [".bmp", ".jpg", ".jp2", ".png", ".webp", ".ppm", ".pbm", ".pam", ".pfm", ".sr",
                                       ".tif", ".hdr", ".avif", ".gif"])
def test_every_format_opencv_writes_is_recognised_by_its_first_bytes(tmp_path, extension):
    image = np.random.default_rng(0).integers(0, 256, (40, 48, 3), dtype=np.uint8)
    written = image.astype(np.float32) / 255 if extension in (".pfm", ".hdr") else image
    written = image[:, :, 0] if extension == ".pbm" else written  # a bitmap takes one channel
    path = tmp_path / f"a{extension}"
    if not cv2.haveImageWriter(str(path)) or not cv2.imwrite(str(path), written):
        pytest.skip(f"this OpenCV build writes no {extension}")
    assert looks_like_image(path.read_bytes()[:16])
    assert read_image(path).shape == (40, 48, 3)


def test_a_file_that_starts_like_no_image_is_refused_before_it_is_read(tmp_path):
    import tracemalloc

    video = tmp_path / "holiday.png"  # a video named like an image: ISO media ("ftyp"), brand mp42
    with open(video, "wb") as f:
        f.write(b"\x00\x00\x00\x20ftypmp42" + b"\x00" * 20)
        f.truncate(64 * 2**20)  # 64 MB (sparse)
    tracemalloc.start()
    try:
        with pytest.raises(ImageReadError, match=r"holiday.png: not a readable image \(its first bytes match no image format"):
            read_image(video)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2**20  # the 64 MB were never read
    image = tmp_path / "big.png"  # starts like a PNG: read, once
    with open(image, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.truncate(16 * 2**20)
    tracemalloc.start()
    try:
        assert len(read_image_bytes(image)) == 16 * 2**20
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1.2 * 16 * 2**20  # one copy of the file (two: 32 MB)
    assert looks_like_image(b"\x00\x00\x00\x20ftypavif" + b"\x00" * 4)  # AVIF is ISO media too
    assert looks_like_image(b"\x00\x00\x00\x1cftypmif1\x00\x00\x00\x00mif1avifmiaf")  # AVIF as a compatible brand
    assert not looks_like_image(b"\x00\x00\x00\x18ftypmif1\x00\x00\x00\x00mif1heic" + b"avif")  # after the box: no
    assert not looks_like_image(b"PK\x03\x04" + b"\x00" * 12) and not looks_like_image(b"")  # a zip; nothing


def test_load_folder_recursive_and_skips_bad_files(photo_folder, caplog):
    (photo_folder / "broken.jpg").write_bytes(b"\xff\xd8garbage")
    cv2.imwrite(str(photo_folder / "tiny.png"), np.zeros((20, 20, 3), np.uint8))
    photos = load_photographs(photo_folder, min_size=100)
    assert len(photos) == 5
    assert {p.name for p in photos} >= {"img0.png", "sub/img1.png"}
    [warning] = [r for r in caplog.records if r.name == "data_pipeline.sources"]  # one line for all skipped files
    assert warning.levelname == "WARNING"
    assert "skipped 2 of 7" in warning.message and "1 unreadable" in warning.message and "1 smaller than 100" in warning.message


def test_folder_without_images_is_a_clear_error(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        load_photographs(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_photographs(tmp_path / "nope")


def test_bundled_photographs_ship_with_the_packages():
    paths = bundled_photo_paths()
    assert len(paths) == 20 and all(p.is_file() for _, p in paths)
    photos = load_photographs(None)
    assert len({p.group for p in photos}) == 19
    assert all(p.image.dtype == np.uint8 and p.image.shape[2] == 3 for p in photos)


def test_bundled_splits_are_the_split_the_bundled_model_recorded():
    splits = bundled_splits(96, seed=0)
    names = {s: [p.name for p in v] for s, v in splits.items()}
    assert names["val"] == ["astronaut", "ihc", "motorcycle_left", "motorcycle_right"]
    assert names["test"] == ["camera", "cell", "gravel"]
    assert len(names["train"]) == 13
    # The bundled model's record names each split's photographs, those without a usable crop under "left out".
    recorded = json.loads((Path(__file__).resolve().parent.parent / "saved_models" / "blurnet-densenet121" / "blurnet.json").read_text())
    parts = dict(part.split(": ", 1) for part in recorded["training_data"].split("split by photograph: ")[1].split("; "))
    left_out = {entry.split(" (")[0] for entry in parts.pop("left out").split(", ")}
    assert left_out == {"moon", "retina", "brick", "cell"}
    assert {split: parts[split].split(", ") for split in parts} == {s: [n for n in v if n not in left_out] for s, v in names.items()}


def test_split_is_by_group_and_deterministic(photos):
    photos = photos + [Photo("twin", "g0", photos[0].image)]
    a = split_photographs(photos, seed=5)
    b = split_photographs(photos, seed=5)
    assert {s: [p.name for p in v] for s, v in a.items()} == {s: [p.name for p in v] for s, v in b.items()}
    groups = {s: {p.group for p in v} for s, v in a.items()}
    assert not (groups["train"] & groups["test"]) and not (groups["train"] & groups["val"]) and not (groups["val"] & groups["test"])
    assert sum(len(v) for v in a.values()) == 7
    assert len(groups["test"]) == 1 and len(groups["val"]) == 1
    seeds = {tuple(sorted(p.group for p in split_photographs(photos, seed=s)["test"])) for s in range(10)}
    assert len(seeds) > 1  # the seed matters
    assert describe_split(a) == "train: 5 photographs: p0, p2, p3, p5, twin\n  val: 1 photographs: p4\n test: 1 photographs: p1"
    assert [p.name for p in split_photographs(photos, seed=8)["test"]] == ["p0", "twin"]  # a group stays together


@pytest.mark.parametrize("groups, expected", [(2, (1, 0, 1)), (3, (1, 1, 1)), (4, (1, 1, 2)), (10, (2, 4, 4))])
def test_large_fractions_leave_train_a_group(photos, groups, expected):
    many = [Photo(f"p{i}", f"g{i}", photos[0].image) for i in range(groups)]
    splits = split_photographs(many, seed=0, val_fraction=0.45, test_fraction=0.45)
    assert tuple(len(splits[s]) for s in ("train", "val", "test")) == expected


def test_split_rejects_bad_fractions(photos):
    with pytest.raises(ValueError, match="1.1"):
        split_photographs(photos, val_fraction=0.7, test_fraction=0.4)


def test_a_malformed_colour_profile_is_read_without_libpng_warning(capfd):
    from data_pipeline.sources import without_icc_profile

    [page] = [path for _, path in bundled_photo_paths() if path.name == "page.png"]
    data = page.read_bytes()
    as_shipped = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR)
    assert "libpng warning: iCCP" in capfd.readouterr().err  # what decoding the file as shipped prints
    image = read_image(page)
    assert "libpng" not in capfd.readouterr().err
    np.testing.assert_array_equal(image, to_rgb8(as_shipped))  # the same pixels
    stripped = without_icc_profile(data)
    assert b"iCCP" in data[:200] and b"iCCP" not in stripped
    assert len(data) - len(stripped) == 765  # page.png's profile chunk, nothing else
    assert stripped[:33] == data[:33]  # signature and IHDR kept
    assert without_icc_profile(b"not a png") == b"not a png"
    plain = cv2.imencode(".png", np.zeros((4, 4, 3), np.uint8))[1].tobytes()
    assert without_icc_profile(plain) == plain


def test_jpeg_orientation_reads_the_exif_tag_in_either_byte_order():
    from data_pipeline.sources import jpeg_orientation

    plain = bytes(cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))[1])
    assert jpeg_orientation(plain) == 1 and jpeg_orientation(b"not a jpeg") == 1
    assert jpeg_orientation(rotated_jpeg(np.zeros((8, 8, 3), np.uint8))) == 6  # big-endian ("MM")
    for value in (3, 8):
        exif = b"Exif\x00\x00II\x2a\x00\x08\x00\x00\x00\x01\x00\x12\x01\x03\x00\x01\x00\x00\x00" + bytes([value, 0, 0, 0]) + b"\x00" * 4
        tagged = plain[:2] + b"\xff\xe1" + (len(exif) + 2).to_bytes(2, "big") + exif + plain[2:]
        assert jpeg_orientation(tagged) == value  # little-endian ("II")
        assert cv2.imdecode(np.frombuffer(tagged, np.uint8), cv2.IMREAD_COLOR) is not None
    assert jpeg_orientation(plain[:2] + b"\xff\xe1\x00\x08Exif\x00\x00" + plain[2:]) == 1  # an empty EXIF segment


def test_integer_pixels_other_than_8_and_16_bit_are_read_as_0_to_255_or_refused_with_their_range():
    from data_pipeline.sources import ImageReadError, to_rgb8

    image = np.arange(48, dtype=np.int64).reshape(4, 4, 3) * 5  # 0..235, BGR
    np.testing.assert_array_equal(to_rgb8(image), image[:, :, ::-1].astype(np.uint8))
    for dtype, value in ((np.int32, 30000), (np.int16, -1)):
        with pytest.raises(ImageReadError, match=f"{np.dtype(dtype).name} pixels from {value} to {value}"):
            to_rgb8(np.full((4, 4, 3), value, dtype))  # clipped, 30000 would read as white and -1 as black


def test_an_image_over_opencvs_pixel_limit_says_so_and_how_to_read_it():
    import struct
    import zlib

    from data_pipeline.sources import ImageReadError, decode_image

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 40000, 30000, 8, 2, 0, 0, 0)  # 1.2 gigapixels, RGB
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")
    with pytest.raises(ImageReadError, match=r"big.png: larger than OpenCV reads by default .* OPENCV_IO_MAX_IMAGE_PIXELS"):
        decode_image(png, "big.png")
