"""Classify the blur of real photographs of any size (`blurnet predict`, `blurnet.predict`).

The model never resizes: blur is a property of scale, and the model was trained
on crops whose blur parameters lie in the training ranges *at the crop's own scale*.
A photograph is therefore processed in three steps.

1. **Scale.** The photograph is shrunk by a factor `scale` (`cv2.INTER_AREA`),
   which divides every blur length (Gaussian sigma, motion length, defocus
   radius) by the same factor. `--scale FACTOR` sets it; `--scale auto` (the
   default) uses

       scale = max(1, longer_side / REFERENCE_SIDE),   REFERENCE_SIDE = 1024 px

   i.e. photographs whose longer side exceeds 1024 px are brought to a longer
   side of 1024 px; smaller ones are used as they are (never upscaled). The
   rationale: the training ranges are defined on photographs of roughly screen size
   (the training photographs are 300 to 1400 px); a 12-megapixel photograph of the
   same scene (4000 px) shows the same optical blur about four times wider in
   pixels, and the auto factor (~3.9) undoes exactly that. The factor is capped
   so that the shorter side never drops below 32 px (thin panoramas). The factor
   used is recorded in every result (`scale`).

2. **Tiles.** The scaled image is cut into tiles of `image_size` x `image_size`
   pixels (the training crop side, from the export's `blurnet.json`), stride =
   tile side; along a side that is not a multiple of the tile the tiles are
   spread evenly so that they cover it exactly (the last ones overlap a little).
   A side shorter than a tile (but >= 32 px) gives one tile spanning that side:
   the model accepts any size from 32 px. Images under 32 px on either side get
   an error record.

3. **Aggregation.** A scale's answer is the texture-weighted mean of its tile
   probabilities. A tile's texture is the mean gradient magnitude
   (`data_pipeline.crops.gradient_magnitude`, 0..255 scale) of its pixels in the
   scaled image; it is also the tile's weight. Tiles with texture < 4.0
   (`MIN_TEXTURE`, the threshold training crops were selected with) carry no blur
   information (sky, walls) and are ignored, unless every tile is flat, in
   which case the plain mean of all tiles is used. The mean of probability
   vectors is a probability vector, so the four probabilities sum to 1.

4. **Scale pyramid.** Real blur is often larger than the training ranges at the
   working scale, and then its tiles are flat (ignored) or unlike anything
   the model saw. The photograph is therefore also looked at 2 and 4 times
   smaller (`PYRAMID`, levels whose shorter side would drop under 32 px are
   skipped), where such blur falls back into the training ranges: up to 4
   times the range maxima at the working scale are covered. Rule: a level's
   *blur confidence* is 1 - its sharp probability; a level whose tiles are
   all flat counts only when every level's are. If no level reaches 0.5,
   the photograph is `sharp` and the working scale answers. Otherwise the
   finest level whose blur confidence is within `PYRAMID_TOLERANCE` (0.1) of
   the most confident level answers: the finest, because it has the most
   tiles and detail; not the first blurred one, because blur larger than the
   range can look like the wrong kind of blur there. Sharp photographs stay
   sharp at every level (shrinking only sharpens), so the pyramid costs them
   nothing in accuracy, and 1/4 + 1/16 more tiles in time.

5. **Blur map and mask** (`--map`, `--mask`, only when asked for). The working
   scale is tiled a second time with a stride of half a tile (`map_boxes`:
   tiles overlap by half, twice the resolution of the stride-tile grid the
   whole-photo answer uses) and every one of these tiles goes through the
   model. Every map tile counts, flat ones included: in a partly blurred
   photograph the blurred background is often flat, and its tiles get the
   model's own answer like any other (the picture outlines them in grey). The
   whole-photo answer does not use these tiles and is the same with or without
   a map. `--mask` writes each pixel's blur probability (the mean of
   1 - p_sharp over the map tiles covering it, resized to the photograph's
   size) thresholded at 0.5: see `blurnet.blurmap`.

Every answer has `label` and `probabilities` (of the level that answered),
`scale` (that level's downscale factor), `tiles` (textured tiles used there)
and `area`: the fraction of that level's textured tiles whose own answer is
each class, for users who want their own threshold (e.g. "blurred if more than
30 % of the textured area is"). A photograph with blurred and sharp regions is
labelled by its texture-weighted mean, so a sharp subject in front of a blurred
background is usually `sharp`, and `area` says how much is blurred.

Every input yields one record: `{path, label, probabilities, scale, tiles, area}` or,
for anything that cannot be classified (missing, empty, corrupt, truncated,
non-image, under 32 px), `{path, error}` with a message. Nothing raises for bad
input; only a missing or broken model raises (`NotAnExportError`).
"""
from __future__ import annotations

import concurrent.futures
import glob
import math
import os
import sys
import types
from pathlib import Path
from typing import Callable, Iterable

import cv2
import numpy as np

from data_pipeline.classes import CLASS_NAMES, MIN_IMAGE_SIDE
from data_pipeline.crops import DEFAULT_MIN_TEXTURE, gradient_magnitude
from data_pipeline.sources import IMAGE_EXTENSIONS, ImageReadError, list_image_files, read_image, to_rgb8

REFERENCE_SIDE = 1024
MIN_SIDE = MIN_IMAGE_SIDE
MIN_TEXTURE = DEFAULT_MIN_TEXTURE
MAX_TILES_PER_BATCH = 64
PYRAMID = (1, 2, 4)
PYRAMID_TOLERANCE = 0.1
_GLOB_CHARS = set("*?[")


# --------------------------------------------------------------------------- inputs


def expand_paths(paths: Iterable[str | os.PathLike]) -> list[tuple[str, str | None]]:
    """Files named by `paths` (files, folders recursively, glob patterns), in order.

    Returns `(path, error)` pairs: `error` is None for a file to classify, or a
    message for an argument that names nothing (missing path, empty pattern or
    folder). A file named explicitly is kept whatever its extension; folders
    contribute their files with an image extension. Duplicates are dropped.
    """
    out: list[tuple[str, str | None]] = []
    seen: set[str] = set()

    def add(path: str, error: str | None = None):
        key = os.path.abspath(path) if error is None else f"{path}\0{error}"
        if key not in seen:
            seen.add(key)
            out.append((path, error))

    def add_folder(folder: str):
        files = [str(p) for p in list_image_files(folder)]
        if not files:
            add(folder, f"folder contains no image files ({', '.join(IMAGE_EXTENSIONS)})")
        for f in files:
            add(f)

    for raw in paths:
        path = os.fspath(raw)
        if os.path.isdir(path):
            add_folder(path)
        elif os.path.exists(path):
            add(path)
        elif _GLOB_CHARS & set(path):
            matches = sorted(glob.glob(path, recursive=True))
            if not matches:
                add(path, "no file matches this pattern")
            for match in matches:
                if os.path.isdir(match):
                    add_folder(match)
                else:
                    add(match)
        else:
            add(path, "no such file or folder")
    return out


def array_to_rgb8(array) -> np.ndarray:
    """An in-memory image (HxW gray, HxWx3 RGB or HxWx4 RGBA; uint8, uint16 or float 0..1) as RGB uint8."""
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[2] in (3, 4):
        array = array[:, :, 2::-1]  # RGB(A) -> BGR, the order to_rgb8 expects; alpha dropped
    return to_rgb8(array)


# --------------------------------------------------------------------------- scale and tiles


def auto_scale(height: int, width: int, reference_side: int = REFERENCE_SIDE) -> float:
    """The `--scale auto` factor: max(1, longer / reference), capped so the shorter side stays >= 32 px."""
    factor = max(1.0, max(height, width) / reference_side)
    return max(1.0, min(factor, min(height, width) / MIN_SIDE))


def parse_scale(value) -> str | float:
    """'auto' or a positive finite float; `ValueError` with a clear message otherwise."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    try:
        factor = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"scale must be 'auto' or a number > 0, got {value!r}") from None
    if not math.isfinite(factor) or factor <= 0:
        raise ValueError(f"scale must be 'auto' or a number > 0, got {value!r}")
    return factor


def rescale(image: np.ndarray, factor: float) -> np.ndarray:
    """`image` shrunk by `factor` (INTER_AREA; INTER_CUBIC if factor < 1); unchanged for 1."""
    if abs(factor - 1.0) < 1e-9:
        return image
    h, w = image.shape[:2]
    size = (max(1, int(round(w / factor))), max(1, int(round(h / factor))))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA if factor > 1 else cv2.INTER_CUBIC)


def _starts(length: int, tile: int) -> list[int]:
    if length <= tile:
        return [0]
    n = math.ceil(length / tile)
    return [int(round(i * (length - tile) / (n - 1))) for i in range(n)]


def tile_boxes(height: int, width: int, tile: int) -> list[tuple[int, int, int, int]]:
    """(top, left, tile_height, tile_width) of the tiles covering an image, row-major."""
    th, tw = min(tile, height), min(tile, width)
    return [(top, left, th, tw) for top in _starts(height, tile) for left in _starts(width, tile)]


def map_boxes(height: int, width: int, tile: int) -> list[tuple[int, int, int, int]]:
    """(top, left, tile_height, tile_width) of the blur-map tiles: stride tile // 2, spread evenly, row-major."""
    if tile < 2:
        raise ValueError(f"tile must be at least 2 px, got {tile!r}")
    stride = tile // 2

    def starts(length: int) -> list[int]:
        if length <= tile:
            return [0]
        n = math.ceil((length - tile) / stride) + 1
        return [int(round(i * (length - tile) / (n - 1))) for i in range(n)]

    th, tw = min(tile, height), min(tile, width)
    return [(top, left, th, tw) for top in starts(height) for left in starts(width)]


def too_small_message(height: int, width: int) -> str | None:
    """The error message for an image under 32 px on a side, else None."""
    if height < MIN_SIDE or width < MIN_SIDE:
        return f"image is {width} x {height} px; blurnet needs at least {MIN_SIDE} px on each side"
    return None


class Prepared:
    """A photograph ready for the model: scaled image, tile boxes and tile textures."""

    def __init__(self, image: np.ndarray, scale: float, tile: int):
        self.scale = scale
        self.source_shape = image.shape[:2]  # (height, width) before scaling: the size of a --mask
        self.image = rescale(image, scale)
        h, w = self.image.shape[:2]
        self.boxes = tile_boxes(h, w, tile)
        grad = gradient_magnitude(self.image)
        self.textures = np.array([float(grad[t : t + th, l : l + tw].mean()) for t, l, th, tw in self.boxes], np.float64)

    def tiles(self) -> np.ndarray:
        """All tiles as one float32 batch `(n, th, tw, 3)`, values 0..255."""
        return np.stack([self.image[t : t + th, l : l + tw] for t, l, th, tw in self.boxes]).astype(np.float32)


def prepare(image: np.ndarray, tile: int, scale: str | float = "auto") -> Prepared:
    """Scale and tile an RGB uint8 image; `ImageReadError` when it is (or becomes) too small."""
    h, w = image.shape[:2]
    message = too_small_message(h, w)
    if message:
        raise ImageReadError(message)
    factor = auto_scale(h, w) if scale == "auto" else float(scale)
    prepared = Prepared(image, factor, tile)
    sh, sw = prepared.image.shape[:2]
    if too_small_message(sh, sw):
        raise ImageReadError(
            f"image is {w} x {h} px, {sw} x {sh} px after downscaling by {factor:g}; "
            f"blurnet needs at least {MIN_SIDE} px on each side (use a smaller --scale)"
        )
    return prepared


def pyramid(image: np.ndarray, tile: int, scale: str | float = "auto") -> list[Prepared]:
    """`prepare(image, tile, scale)` and the same photograph `PYRAMID` times smaller (levels under 32 px skipped)."""
    levels = [prepare(image, tile, scale)]
    h, w = image.shape[:2]
    for factor in PYRAMID[1:]:
        coarser = levels[0].scale * factor
        if min(h, w) / coarser >= MIN_SIDE:
            levels.append(Prepared(image, coarser, tile))
    return levels


def area_fractions(probabilities: np.ndarray, textures: np.ndarray, min_texture: float = MIN_TEXTURE) -> np.ndarray:
    """Fraction of the textured tiles (all tiles if none is textured) whose own answer is each class."""
    probabilities = np.asarray(probabilities)
    used = np.asarray(textures) >= min_texture
    votes = np.argmax(probabilities[used] if used.any() else probabilities, axis=1)
    return np.bincount(votes, minlength=probabilities.shape[1]) / max(len(votes), 1)


def choose_level(means: list[np.ndarray], textured: list[bool] | None = None, tolerance: float = PYRAMID_TOLERANCE) -> int:
    """The pyramid level that answers (see the module docstring): 0 when no level is blurred with confidence >= 0.5.

    `textured[k]` says whether level k has a textured tile; levels without one (their answer is the plain
    mean of flat tiles) answer only when no level has one.
    """
    textured = [True] * len(means) if textured is None or not any(textured) else textured
    confidence = np.array([1.0 - float(m[0]) if t else -1.0 for m, t in zip(means, textured)])
    if confidence.max() < 0.5:
        return 0
    return int(np.flatnonzero(confidence >= confidence.max() - tolerance)[0])


def aggregate(probabilities: np.ndarray, textures: np.ndarray, min_texture: float = MIN_TEXTURE) -> tuple[np.ndarray, int]:
    """Texture-weighted mean of tile probabilities, flat tiles ignored; returns (probabilities, tiles used)."""
    probabilities = np.asarray(probabilities, np.float64)
    textures = np.asarray(textures, np.float64)
    used = textures >= min_texture
    if used.any():
        weights = np.where(used, textures, 0.0)
        mean = (probabilities * weights[:, None]).sum(axis=0) / weights.sum()
        count = int(used.sum())
    else:
        mean, count = probabilities.mean(axis=0), len(probabilities)
    return mean / mean.sum(), count


# --------------------------------------------------------------------------- model


_MODEL_CACHE: dict = {}


def load_model(model=None):
    """An `ExportedModel` from None (the default), a folder, or an already loaded model (returned as is).

    Loaded folders are cached per process (keyed by path and modification time).
    """
    from blurnet.export import ExportedModel, default_model_dir

    if model is not None and not isinstance(model, (str, os.PathLike)):
        return model
    folder = Path(model) if model is not None else default_model_dir()
    try:
        key = (str(folder.resolve()), (folder / "saved_model.pb").stat().st_mtime_ns)
    except OSError:
        key = None
    if key is not None and key in _MODEL_CACHE:
        return _MODEL_CACHE[key]
    loaded = ExportedModel(folder)
    if key is not None:
        _MODEL_CACHE[key] = loaded
    return loaded


def tile_probabilities(model, prepared: Prepared, batch: int = MAX_TILES_PER_BATCH) -> np.ndarray:
    """Model probabilities `(tiles, 4)` for the tiles of a prepared photograph."""
    tiles = prepared.tiles()
    out = [np.asarray(model(tiles[i : i + batch])) for i in range(0, len(tiles), batch)]
    return np.concatenate(out, axis=0)


def map_tile_probabilities(model, prepared: Prepared, batch: int = MAX_TILES_PER_BATCH) -> tuple[list, np.ndarray, np.ndarray]:
    """The blur-map tiles of a prepared photograph: (`map_boxes` of its scaled image, probabilities `(n, 4)`, textures)."""
    h, w = prepared.image.shape[:2]
    boxes = map_boxes(h, w, int(model.image_size))
    grad = gradient_magnitude(prepared.image)
    textures = np.array([float(grad[t : t + th, l : l + tw].mean()) for t, l, th, tw in boxes], np.float64)
    tiles = np.stack([prepared.image[t : t + th, l : l + tw] for t, l, th, tw in boxes]).astype(np.float32)
    out = [np.asarray(model(tiles[i : i + batch])) for i in range(0, len(tiles), batch)]
    return boxes, np.concatenate(out, axis=0), textures


def mask_probability(prepared: Prepared, boxes, probabilities) -> np.ndarray:
    """Per-pixel blur probability (float32, 0..1) at the photograph's original size, from its map tiles: what `--mask` thresholds."""
    from blurnet.blurmap import blur_probability_map, resize_probability

    return resize_probability(blur_probability_map(prepared.image.shape[:2], boxes, probabilities), *prepared.source_shape)


def numbered_path(target: str | os.PathLike, n: int, count: int) -> Path:
    """Where the `n`-th (0-based) of `count` output files goes: `target` for one, else `<stem>-<n+1><suffix>`."""
    target = Path(target)
    return target if count == 1 else target.with_name(f"{target.stem}-{n + 1}{target.suffix or '.png'}")


# --------------------------------------------------------------------------- records


def _record(path: str, probabilities: np.ndarray, scale: float, tiles: int, area: np.ndarray) -> dict:
    probabilities = [float(p) for p in probabilities]
    return {
        "path": path,
        "label": CLASS_NAMES[int(np.argmax(probabilities))],
        "probabilities": dict(zip(CLASS_NAMES, probabilities)),
        "scale": round(float(scale), 6),
        "tiles": int(tiles),
        "area": {name: round(float(a), 4) for name, a in zip(CLASS_NAMES, area)},
    }


def classify_levels(model, levels: list[Prepared]) -> tuple[dict, np.ndarray]:
    """Answer a photograph from its pyramid levels: the record fields and the working scale's tile probabilities."""
    answers = []
    for level in levels:
        probs = tile_probabilities(model, level)
        mean, used = aggregate(probs, level.textures)
        answers.append((probs, mean, used))
    textured = [bool((level.textures >= MIN_TEXTURE).any()) for level in levels]
    k = choose_level([mean for _, mean, _ in answers], textured)
    probs, mean, used = answers[k]
    fields = {"probabilities": mean, "scale": levels[k].scale, "tiles": used, "area": area_fractions(probs, levels[k].textures)}
    return fields, answers[0][0]


def _load(item) -> np.ndarray:
    if isinstance(item, np.ndarray):
        return array_to_rgb8(item)
    return read_image(item)


def _describe(error: BaseException) -> str:
    if isinstance(error, ImageReadError):
        return str(error)
    if isinstance(error, MemoryError):
        return "not enough memory to process this image"
    text = str(error).strip().splitlines()
    return f"cannot process this image ({type(error).__name__}: {text[-1] if text else 'no details'})"


def predict(
    paths_or_arrays,
    model=None,
    scale: str | float = "auto",
    *,
    map_path: str | os.PathLike | None = None,
    mask_path: str | os.PathLike | None = None,
    progress: Callable[[int], None] | None = None,
    workers: int = 2,
) -> list[dict]:
    """Classify the blur of images; one record per image (see the module docstring).

    `paths_or_arrays`: a path, an array, or a list of them. Paths may be files,
    folders (recursive) or glob patterns; arrays are RGB(A) or gray, uint8,
    uint16 or float 0..1, and get paths "<array 0>", "<array 1>", ...
    `model`: None (the default export), an export folder, or an `ExportedModel`.
    `scale`: "auto" or a downscale factor. `map_path`: also write per-tile blur
    maps (see `blurnet.blurmap`): to that file for one image, else to
    `<stem>-<n><suffix>` per classified image. `mask_path`: also write binary
    blur masks (white = blurred, the photograph's size), named the same way.
    Records get "map" / "mask" (the path written). `progress(n)` is called after each
    image. Decoding and tiling of the next images overlap the model's work
    (`workers` threads).
    """
    scale = parse_scale(scale)
    loaded = load_model(model)
    tile = int(loaded.image_size)

    if isinstance(paths_or_arrays, (str, os.PathLike, np.ndarray)):
        paths_or_arrays = [paths_or_arrays]
    items: list[tuple[str, object, str | None]] = []
    array_index = 0
    for entry in paths_or_arrays:
        if isinstance(entry, np.ndarray):
            items.append((f"<array {array_index}>", entry, None))
            array_index += 1
        else:
            items.extend((p, p, err) for p, err in expand_paths([entry]))

    def work(item):
        name, source, error = item
        if error is not None:
            return name, None, error
        try:
            return name, pyramid(_load(source), tile, scale), None
        except Exception as exc:  # noqa: BLE001 - every bad input becomes a record
            return name, None, _describe(exc)

    records: list[dict] = []
    maps: list[tuple[int, Prepared]] = []
    with concurrent.futures.ThreadPoolExecutor(max(1, workers)) as pool:
        pending: list[concurrent.futures.Future] = []
        queue = iter(items)
        for item in queue:
            pending.append(pool.submit(work, item))
            if len(pending) > workers:
                break
        while pending:
            name, levels, error = pending.pop(0).result()
            for item in queue:
                pending.append(pool.submit(work, item))
                break
            if levels is not None:
                try:
                    fields, _ = classify_levels(loaded, levels)
                    records.append(_record(name, **fields))
                    if map_path is not None or mask_path is not None:
                        maps.append((len(records) - 1, levels[0]))
                except Exception as exc:  # noqa: BLE001
                    records.append({"path": name, "error": _describe(exc)})
            else:
                records.append({"path": name, "error": error})
            if progress is not None:
                progress(1)

    if maps:
        from blurnet.blurmap import write_blur_map, write_blur_mask

        for n, (index, prepared) in enumerate(maps):
            try:
                boxes, probs, textures = map_tile_probabilities(loaded, prepared)
                if map_path is not None:
                    where = numbered_path(map_path, n, len(maps))
                    records[index]["map"] = str(write_blur_map(where, prepared.image, boxes, probs, textures, MIN_TEXTURE))
                if mask_path is not None:
                    where = numbered_path(mask_path, n, len(maps))
                    records[index]["mask"] = str(write_blur_mask(where, mask_probability(prepared, boxes, probs)))
            except Exception as exc:  # noqa: BLE001
                records[index]["map_error"] = _describe(exc)
    return records


def count_inputs(paths_or_arrays) -> int:
    """How many records `predict` will return for these inputs (for progress bars)."""
    if isinstance(paths_or_arrays, (str, os.PathLike, np.ndarray)):
        paths_or_arrays = [paths_or_arrays]
    return sum(1 if isinstance(e, np.ndarray) else len(expand_paths([e])) for e in paths_or_arrays)


# --------------------------------------------------------------------------- output formats


CSV_FIELDS = ("path", "label", *CLASS_NAMES, "scale", "tiles", *(f"area_{c}" for c in CLASS_NAMES), "error")


def format_records(records: list[dict], fmt: str) -> str:
    """Records as `table`, `csv` or `json` text."""
    import csv
    import io
    import json

    if fmt == "json":
        return json.dumps(records, indent=2) + "\n"
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(CSV_FIELDS)
        for r in records:
            probs = r.get("probabilities", {})
            writer.writerow(
                [r["path"], r.get("label", "")]
                + [f"{probs[c]:.6f}" if c in probs else "" for c in CLASS_NAMES]
                + [f"{r['scale']:g}" if "scale" in r else "", r.get("tiles", "")]
                + [f"{r['area'][c]:.4f}" if "area" in r else "" for c in CLASS_NAMES]
                + [r.get("error", "")]
            )
        return buffer.getvalue()
    if fmt != "table":
        raise ValueError(f"unknown format {fmt!r}; expected table, csv or json")
    width = max([len("path")] + [len(r["path"]) for r in records])
    header = f"{'path':<{width}}  {'label':<8}  " + "  ".join(f"{c:>8}" for c in CLASS_NAMES) + f"  {'scale':>6}  {'tiles':>5}  {'blurred':>7}"
    lines = [header, "-" * len(header)]
    for r in records:
        if "error" in r:
            lines.append(f"{r['path']:<{width}}  ERROR: {r['error']}")
        else:
            probs = "  ".join(f"{r['probabilities'][c]:>8.3f}" for c in CLASS_NAMES)
            blurred = 1.0 - r["area"]["sharp"]
            lines.append(f"{r['path']:<{width}}  {r['label']:<8}  {probs}  {r['scale']:>6.3g}  {r['tiles']:>5d}  {blurred:>7.0%}")
    return "\n".join(lines) + "\n"


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write `text` to `path` via a temporary file and `os.replace`."""
    from blurnet.atomic import atomic_file

    with atomic_file(path) as tmp:
        tmp.write_text(text)
    return Path(path)


class _CallableModule(types.ModuleType):
    """`import blurnet.predict` replaces the `blurnet.predict` function attribute by this module;
    making the module callable keeps `blurnet.predict(...)` working either way."""

    def __call__(self, *args, **kwargs):
        return predict(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
