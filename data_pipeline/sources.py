"""Sharp source photographs: reading, the bundled set, and the split by photograph."""
from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path

import cv2
import numpy as np

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")

# Natural photographs shipped inside scikit-image's and scikit-learn's wheels,
# as (group, package, relative path). Photographs of one scene share a group so
# that a split never puts one in training and its twin in test.
_BUNDLED = (
    ("astronaut", "skimage", "data/astronaut.png"),
    ("brick", "skimage", "data/brick.png"),
    ("camera", "skimage", "data/camera.png"),
    ("cell", "skimage", "data/cell.png"),
    ("chelsea", "skimage", "data/chelsea.png"),
    ("coffee", "skimage", "data/coffee.png"),
    ("coins", "skimage", "data/coins.png"),
    ("grass", "skimage", "data/grass.png"),
    ("gravel", "skimage", "data/gravel.png"),
    ("hubble_deep_field", "skimage", "data/hubble_deep_field.jpg"),
    ("ihc", "skimage", "data/ihc.png"),
    ("moon", "skimage", "data/moon.png"),
    ("motorcycle", "skimage", "data/motorcycle_left.png"),
    ("motorcycle", "skimage", "data/motorcycle_right.png"),
    ("page", "skimage", "data/page.png"),
    ("retina", "skimage", "data/retina.jpg"),
    ("rocket", "skimage", "data/rocket.jpg"),
    ("text", "skimage", "data/text.png"),
    ("china", "sklearn", "datasets/images/china.jpg"),
    ("flower", "sklearn", "datasets/images/flower.jpg"),
)

SPLITS = ("train", "val", "test")


class ImageReadError(ValueError):
    """A file that is not a readable image; the message says why."""


@dataclasses.dataclass
class Photo:
    """A sharp photograph in memory: `image` is HxWx3 uint8 RGB."""

    name: str
    group: str
    image: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width) in pixels."""
        return self.image.shape[:2]


#: The largest maximum at which `to_rgb8` reads a float image as 0..1 rather than 0..255.
FLOAT_UNIT_MAX = 2.0


def to_rgb8(image: np.ndarray) -> np.ndarray:
    """Any decoded image (gray, BGR, BGRA; 8-bit, 16-bit or float) to HxWx3 uint8 RGB.

    Input channel order is OpenCV's (BGR/BGRA). Alpha is dropped; 16-bit is
    scaled by 1/257; other integer types must hold 0..255 (`ImageReadError` echoing their range if not); float images are taken as 0..1 when their maximum is <= `FLOAT_UNIT_MAX` (2: a 0..1 image
    that filtering or sharpening pushed a little over 1 is still read on that scale; a 0..255 image that dark
    would be black), else as 0..255.
    """
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    elif image.ndim == 3 and image.shape[2] in (3, 4):
        image = image[:, :, 2::-1] if image.shape[2] == 3 else image[:, :, [2, 1, 0]]
    else:
        raise ImageReadError(f"unsupported image shape {image.shape!r} (expected gray, RGB or RGBA)")
    if image.dtype == np.uint8:
        return np.ascontiguousarray(image)
    if image.dtype == np.uint16:
        return ((image.astype(np.uint32) + 128) // 257).astype(np.uint8)
    if np.issubdtype(image.dtype, np.floating):
        finite = np.nan_to_num(image.astype(np.float32))
        scale = 255.0 if finite.size and finite.max() <= FLOAT_UNIT_MAX else 1.0
        return np.clip(finite * scale + 0.5, 0, 255).astype(np.uint8)
    if np.issubdtype(image.dtype, np.integer):  # int32, int64...: no bit depth to go by; 0..255 is the one reading
        low, high = (int(image.min()), int(image.max())) if image.size else (0, 0)
        if low < 0 or high > 255:
            raise ImageReadError(f"{image.dtype} pixels from {low} to {high}: give uint8 (0..255), uint16 (0..65535) or "
                                 f"float (0..1 or 0..255) images, or {image.dtype} ones within 0..255")
        return image.astype(np.uint8)
    raise ImageReadError(f"unsupported pixel type {image.dtype}")


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def without_icc_profile(data: bytes) -> bytes:
    """PNG bytes without their colour profile (the `iCCP` chunk); any other data unchanged.

    OpenCV ignores colour profiles, so the pixels decode the same. libpng checks a
    profile as it reads it and prints a warning for a malformed one (scikit-image's
    page.png: `iCCP: profile 'ICC Profile': 1000000h: invalid rendering intent`)
    that nobody reading the image can act on.
    """
    if not data.startswith(_PNG_SIGNATURE):
        return data
    position = len(_PNG_SIGNATURE)
    while position + 8 <= len(data):  # chunks: length (4 bytes, big-endian), type (4), data, CRC (4)
        end = position + 12 + int.from_bytes(data[position : position + 4], "big")
        kind = data[position + 4 : position + 8]
        if kind == b"iCCP" and end <= len(data):
            return data[:position] + data[end:]
        if kind in (b"PLTE", b"IDAT", b"IEND"):  # a profile comes before these
            break
        position = end
    return data


def decode_image(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Decode encoded image bytes to HxWx3 uint8 RGB, applying EXIF orientation.

    Raises `ImageReadError` for empty, non-image or undecodable data.
    """
    if len(data) == 0:
        raise ImageReadError(f"{name}: empty file (0 bytes)")
    # ANYDEPTH keeps 16-bit; ANYCOLOR keeps gray as gray; neither disables EXIF rotation.
    return _decode(data, cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR, name)


def _decode(data: bytes, flags: int, name: str) -> np.ndarray:
    """`data` (its ICC profile left out) decoded by OpenCV with `flags`, as HxWx3 uint8 RGB; `ImageReadError` if not."""
    try:
        image = cv2.imdecode(np.frombuffer(without_icc_profile(data), np.uint8), flags)
    except cv2.error as error:  # OpenCV asserts on an image over its pixel limit (CV_IO_MAX_IMAGE_PIXELS, 2**30)
        if "CV_IO_MAX_IMAGE_PIXELS" in str(error):
            raise ImageReadError(f"{name}: larger than OpenCV reads by default (2**30 pixels); set the environment "
                                 f"variable OPENCV_IO_MAX_IMAGE_PIXELS higher to read it") from None
        raise ImageReadError(f"{name}: not a readable image ({str(error).strip().splitlines()[-1]})") from None
    if image is None:
        raise ImageReadError(f"{name}: not a readable image (corrupt, truncated or unsupported format)")
    return to_rgb8(image)


_SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_REDUCED_COLOR = {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}


def _jpeg_segments(data: bytes):
    """`(marker, payload)` of each segment of a JPEG's header, in order, up to its image data (start of scan);
    nothing for data that is no JPEG, and no more after bytes that are no marker."""
    if data[:2] != b"\xff\xd8":
        return
    i = 2
    while i + 4 <= len(data) and data[i] == 0xFF:
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            i += 2
            continue
        if marker in (0xDA, 0xD9):  # start of scan, end of image
            return
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        yield marker, data[i + 4 : i + 2 + length]
        i += 2 + length


def jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(height, width) stored in a JPEG's frame header (before EXIF orientation), or None if `data` is no JPEG."""
    for marker, payload in _jpeg_segments(data):
        if marker in _SOF_MARKERS:
            return (int.from_bytes(payload[1:3], "big"), int.from_bytes(payload[3:5], "big")) if len(payload) >= 5 else None
    return None


def jpeg_orientation(data: bytes) -> int:
    """The EXIF Orientation (1 to 8) of a JPEG's APP1 segment; 1 (as stored) when there is none or it is unreadable.
    5 to 8 turn the picture a quarter: its height and width are swapped on display."""
    for marker, segment in _jpeg_segments(data):
        if marker == 0xE1 and segment[:6] == b"Exif\x00\x00" and segment[6:8] in (b"II", b"MM"):
            tiff, order = segment[6:], "little" if segment[6:8] == b"II" else "big"
            ifd = int.from_bytes(tiff[4:8], order)
            for entry in range(ifd + 2, ifd + 2 + 12 * int.from_bytes(tiff[ifd : ifd + 2], order), 12):
                if int.from_bytes(tiff[entry : entry + 2], order) == 0x0112:
                    value = int.from_bytes(tiff[entry + 8 : entry + 10], order)
                    return value if 1 <= value <= 8 else 1
            return 1
    return 1


def decode_reduced(data: bytes, reduction: int, name: str = "<bytes>") -> np.ndarray:
    """A JPEG decoded `reduction` (1, 2, 4 or 8) times smaller by the decoder itself (its DCT scaling: far
    faster than decoding in full and resizing), as HxWx3 uint8 RGB, EXIF orientation applied; other data
    and `reduction=1` decode in full (`decode_image`)."""
    if reduction == 1 or jpeg_size(data) is None:
        return decode_image(data, name)
    if reduction not in _REDUCED_COLOR:
        raise ValueError(f"reduction must be 1, 2, 4 or 8, got {reduction!r}.")
    return _decode(data, _REDUCED_COLOR[reduction], name)


# How the files of the formats OpenCV decodes begin (its imgcodecs decoders' signatures).
_SIGNATURES = (
    b"BM",  # BMP
    b"\xff\xd8\xff",  # JPEG
    _PNG_SIGNATURE,
    b"\x00\x00\x00\x0cjP  \r\n\x87\n", b"\xff\x4f\xff\x51",  # JPEG 2000: file, codestream
    b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+",  # TIFF, BigTIFF
    b"GIF87a", b"GIF89a",
    b"\x59\xa6\x6a\x95",  # Sun raster
    b"\x76\x2f\x31\x01",  # OpenEXR
    b"#?RADIANCE", b"#?RGBE",  # Radiance HDR
    *(b"P" + bytes([c]) for c in b"1234567Ff"),  # PBM, PGM, PPM, PAM, PFM
)
_HEADER_BYTES = 64
_AVIF_BRANDS = (b"avif", b"avis")


def looks_like_image(header: bytes) -> bool:
    """Whether a file starting with `header` (its first 64 bytes, or all of a shorter file) is in a format OpenCV
    decodes: BMP, JPEG, PNG, JPEG 2000, TIFF, GIF, WebP, AVIF, Sun raster, OpenEXR, Radiance HDR or Netpbm."""
    if header.startswith(_SIGNATURES):
        return True
    if header[:4] == b"RIFF" and header[8:12] == b"WEBP":
        return True
    if header[4:8] != b"ftyp":
        return False
    # An ISO media file (AVIF, HEIF, MP4 video...): AVIF when `avif` or `avis` is its major brand (bytes 8..12) or
    # among the compatible brands after the minor version, up to the end of the ftyp box.
    end = min(int.from_bytes(header[:4], "big"), len(header))
    brands = [header[8:12]] + [header[i : i + 4] for i in range(16, end - 3, 4)]
    return any(brand in _AVIF_BRANDS for brand in brands)


def read_image_bytes(path: str | os.PathLike) -> bytes:
    """The bytes of an image file, read only once its first bytes show an image format (`looks_like_image`), so that
    a video or an archive named by mistake is refused without being read into memory.

    Raises `ImageReadError` with the path and the reason: a file that cannot be read, is empty, is no regular file
    (a device or pipe, whose reading might never end) or starts like no image.
    """
    path = Path(path)
    try:
        if path.exists() and not path.is_file() and not path.is_dir():  # a folder: open() says so
            raise ImageReadError(f"{path}: not a regular file (a device, pipe or socket)")
        with open(path, "rb", buffering=0) as f:  # unbuffered: the whole file is then read into one bytes object
            header = f.read(_HEADER_BYTES)
            if not header:
                raise ImageReadError(f"{path}: empty file (0 bytes)")
            if not looks_like_image(header):
                raise ImageReadError(f"{path}: not a readable image (its first bytes match no image format: "
                                     f"{header[:8]!r})")
            f.seek(0)
            return f.readall()  # one copy of the file in memory (header + rest would make two)
    except OSError as error:
        raise ImageReadError(f"{path}: cannot read file ({error.strerror or error})") from None


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as HxWx3 uint8 RGB (EXIF orientation applied).

    Raises `ImageReadError` with the path and the reason when it cannot (`read_image_bytes`, `decode_image`).
    """
    return decode_image(read_image_bytes(path), str(path))


def list_image_files(folder: str | os.PathLike) -> list[Path]:
    """All image files under `folder`, recursively, sorted; `FileNotFoundError` if it is missing."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"Image folder {str(folder)!r} does not exist or is not a folder.")
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def _package_dir(package: str) -> Path:
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"Package {package!r} is not installed; it ships the bundled photographs.")
    return Path(list(spec.submodule_search_locations)[0])


CHECKSET_VARIABLE = "BLURNET_REALDEV"


def checkset_folder(part: str) -> str | None:
    """`$BLURNET_REALDEV/<part>` (`whole`, `partial`, `kernels`): the real photographs kept outside the
    repository for checking, never for training; None when the variable is not set."""
    root = os.environ.get(CHECKSET_VARIABLE)
    return str(Path(root) / part) if root else None


def skipped_without_checkset(option: str) -> dict:
    """What a benchmark that reads the check set does without it (`option` not given, the variable not set): prints
    why and, last, its JSON line `{"skipped": ...}`, which it returns."""
    print(f"skipped: pass {option} DIR, or set {CHECKSET_VARIABLE} to the folder of the check set (real photographs, "
          "kept outside the repository)")
    summary = {"skipped": f"no {option} and no {CHECKSET_VARIABLE}"}
    print(json.dumps(summary))
    return summary


def bundled_photo_paths() -> list[tuple[str, Path]]:
    """(group, path) of the bundled sharp photographs shipped by scikit-image and scikit-learn."""
    return [(group, _package_dir(pkg) / rel) for group, pkg, rel in _BUNDLED]


def load_photographs(folder: str | os.PathLike | None = None, min_size: int = 0, max_side: int | None = None) -> list[Photo]:
    """Load sharp photographs into memory.

    `folder=None` loads the bundled photographs; otherwise every image under
    `folder` (recursively), each its own group. Unreadable files and photographs
    smaller than `min_size` on either side are skipped and reported in one warning
    line on stderr. Photographs larger than `max_side` are downscaled (area
    interpolation keeps them sharp). Raises `FileNotFoundError` when nothing usable
    is found, naming the folder.
    """
    if folder is None:
        entries = [(group, path, path.stem) for group, path in bundled_photo_paths()]
        where = "the bundled photographs (scikit-image, scikit-learn)"
    else:
        root = Path(folder)
        entries = [(str(p.relative_to(root)), p, str(p.relative_to(root))) for p in list_image_files(root)]
        where = str(root)
    photos, unreadable, too_small = [], [], []
    for group, path, name in entries:
        try:
            image = read_image(path)
        except ImageReadError:
            unreadable.append(name)
            continue
        if min(image.shape[:2]) < min_size:
            too_small.append(name)
            continue
        if max_side and max(image.shape[:2]) > max_side:
            f = max_side / max(image.shape[:2])
            image = cv2.resize(image, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
        photos.append(Photo(name=name, group=group, image=image))
    if unreadable or too_small:
        logger.warning(
            f"skipped {len(unreadable) + len(too_small)} of {len(entries)} files in {where}: "
            f"{len(unreadable)} unreadable, {len(too_small)} smaller than {min_size} px"
        )
    if not photos:
        raise FileNotFoundError(
            f"No readable image of at least {min_size} px in {where} "
            f"(looked for {', '.join(IMAGE_EXTENSIONS)})."
        )
    return photos


def split_photographs(photos: list[Photo], seed: int = 0, val_fraction: float = 0.15, test_fraction: float = 0.15) -> dict[str, list[Photo]]:
    """Split photographs into train / val / test by group, deterministically from `seed`.

    Every group lands in exactly one split, so no test crop ever comes from a
    training photograph. With three or more groups, val and test get at least one
    group each; train always gets the rest, and at least one group (when the
    fractions would take every group, the larger of val and test gives one up).
    """
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= value < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {value!r}.")
    if val_fraction + test_fraction >= 1.0:
        raise ValueError(f"val_fraction + test_fraction must be < 1, got {val_fraction + test_fraction!r}.")
    groups = sorted({p.group for p in photos})
    order = np.random.default_rng(seed).permutation(len(groups))
    groups = [groups[i] for i in order]
    n = len(groups)
    n_test = int(round(test_fraction * n))
    n_val = int(round(val_fraction * n))
    if n >= 3:
        n_test, n_val = max(1, n_test), max(1, n_val)
    while n and n_test + n_val > n - 1:  # train keeps one group at least
        if n_val >= n_test:
            n_val -= 1
        else:
            n_test -= 1
    assignment = {}
    for i, g in enumerate(groups):
        assignment[g] = "test" if i < n_test else "val" if i < n_test + n_val else "train"
    splits = {s: [p for p in photos if assignment[p.group] == s] for s in SPLITS}
    return splits


def bundled_splits(image_size: int, seed: int = 0) -> dict[str, list[Photo]]:
    """The bundled photographs split by photograph as `blurnet fit` splits them for crops of `image_size` with
    `seed`: the photographs smaller than a crop left out, then `split_photographs`."""
    return split_photographs(load_photographs(None, min_size=image_size), seed=seed)


def describe_split(splits: dict[str, list[Photo]]) -> str:
    """Human-readable lines saying which photographs went to which split."""
    lines = []
    for s in SPLITS:
        names = ", ".join(p.name for p in splits[s]) or "(none)"
        lines.append(f"{s:>5}: {len(splits[s])} photographs: {names}")
    return "\n".join(lines)
