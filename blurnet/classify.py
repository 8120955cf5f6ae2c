"""Whole-photo and per-tile answers: how `blurnet predict` classifies real photographs of any size.

The model never resizes: blur is a property of scale, and the model was trained
on crops whose blur parameters lie in the training ranges *at the crop's own scale*.
A photograph is therefore processed in these steps.

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
   (`data_pipeline.crops.gradient_magnitude`, 0..255 scale) of the tile cut from the
   scaled image (its edges mirrored, as the exported model measures it); it is also the tile's weight. Tiles with texture < 4.0
   (`MIN_TEXTURE`, the threshold training crops were selected with) carry no blur
   information (sky, walls) and are ignored, unless every tile is flat, in
   which case the plain mean of all tiles is used. The mean of probability
   vectors is a probability vector, so the four probabilities sum to 1.

4. **Scale pyramid.** Real blur is often larger than the training ranges at the
   working scale, and then its tiles are flat (ignored) or unlike anything
   the model saw. The photograph is therefore also looked at 2 and 4 times
   smaller (`PYRAMID`, levels whose shorter side would drop under 32 px are
   skipped), where such blur falls back into the training ranges: up to 4
   times the range maxima at the working scale are covered, in a photograph
   whose shorter side is at least 128 px there (a strip 40 px high has the
   working scale only, and blur beyond the ranges goes unread). Rule: a level's
   *blur confidence* is 1 - its sharp probability; a level whose tiles are
   all flat counts only when every level's are. If no level reaches 0.5,
   the photograph is `sharp` and the finest level with a textured tile
   answers (the working scale, unless all its tiles are flat). Otherwise the
   finest level whose blur confidence is 0.5 or more and within
   `PYRAMID_TOLERANCE` (0.1) of the most confident level answers: the finest, because it has the most
   tiles and detail; not the first blurred one, because blur larger than the
   range can look like the wrong kind of blur there. Sharp photographs stay
   sharp at every level (shrinking only sharpens), so the pyramid costs them
   nothing in accuracy, and 1/4 + 1/16 more tiles in time.

5. **Blur map and mask** (`--map`, `--mask`, only when asked for). The level
   that answered (the working scale, unless blur beyond the training ranges
   was answered at a coarser one, whose tiles the map then draws enlarged over
   the working scale) is tiled a second time with a stride of half a tile (`map_boxes`:
   tiles overlap by half, twice the resolution of the stride-tile grid the
   whole-photo answer uses) and every one of these tiles goes through the
   model. Every map tile counts, flat ones included: in a partly blurred
   photograph the blurred background is often flat, and its tiles get the
   model's own answer like any other (the picture outlines them in grey). The
   whole-photo answer does not use these tiles and is the same with or without
   a map. `--mask` writes each pixel's blur probability (the mean of
   1 - p_sharp over the map tiles covering it, resized to the photograph's
   size) thresholded at 0.5: see `blurnet.blurmap`.

With a model that has the parameter head (`blurnet.parameter_head`), the head
answers the answering level's selected tiles from the same passes as the
probabilities (one view by default; `--full`: the export's own views, each
view's angle turned back before the mean, `LoadedModel.answer_tiles`, whose
probabilities equal `serve`'s on such tiles to 1e-4, so no level is answered
twice); the tiles' answers are combined by the texture-weighted median and read as the predicted class's
parameters in the original photograph's pixels (`blur`, e.g. `{"class": "motion",
"length_px": 37.2, "angle_deg": 12.5}`; `{"class": "sharp"}` for a sharp one).

Every answer has `label` and `probabilities` (of the level that answered;
`label` is its most probable class, so a level blurred with confidence 0.6
spread over three kinds, [0.4, 0.2, 0.2, 0.2], still answers `sharp`:
`1 - probabilities["sharp"]` is the blur confidence for a sharp/blurred
threshold of one's own), `scale` (that level's downscale factor), `tiles`
(the tiles that answered there: every textured one with `full`, by default
the distinct ones of the `TILE_BUDGET` sampled; when none is textured, every
tile of the level, up to the budget) and `area`: the fraction of that level's textured tiles
whose own answer is each class, for users who want their own threshold (e.g.
"blurred if more than 30 % of the textured area is"). A photograph with blurred and sharp regions is
labelled by its texture-weighted mean, so a sharp subject in front of a blurred
background is usually `sharp`, and `area` says how much is blurred.

Every input yields one record: `{path, label, probabilities, scale, tiles, area}` or,
for anything that cannot be classified (missing, empty, corrupt, truncated,
non-image, under 32 px), `{path, error}` with a message. Nothing raises for bad
input; only a missing or broken model raises (`NotAnExportError`).
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from data_pipeline.classes import CLASS_NAMES, MIN_IMAGE_SIDE
from data_pipeline.crops import DEFAULT_MIN_TEXTURE, gradient_magnitude
from data_pipeline.parameters import angle_degrees
from data_pipeline.sources import ImageReadError

REFERENCE_SIDE = 1024
MIN_SIDE = MIN_IMAGE_SIDE
MIN_TEXTURE = DEFAULT_MIN_TEXTURE
MAX_TILES_PER_BATCH = 64
PYRAMID = (1, 2, 4)
PYRAMID_TOLERANCE = 0.1
FAST_VIEWS = 1  # views per tile in the default (fast) whole-photo answer
TILE_BUDGET = 24  # tiles per pyramid level in the default whole-photo answer


# --------------------------------------------------------------------------- scale and tiles


def auto_scale(height: int, width: int, reference_side: int = REFERENCE_SIDE) -> float:
    """The `--scale auto` factor: max(1, longer / reference), capped so the shorter side stays >= 32 px."""
    factor = max(1.0, max(height, width) / reference_side)
    return max(1.0, min(factor, min(height, width) / MIN_SIDE))


def parse_scale(value) -> str | float:
    """'auto' or a finite downscale factor >= 1 (a photograph is never enlarged); `ValueError` echoing the value
    otherwise."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    try:
        factor = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"scale must be 'auto' or a downscale factor >= 1, got {value!r}") from None
    if not math.isfinite(factor) or factor < 1:
        raise ValueError(f"scale must be 'auto' or a downscale factor >= 1 (blurnet never enlarges a photograph), got {value!r}")
    return factor


def rescale(image: np.ndarray, factor: float) -> np.ndarray:
    """`image` shrunk by `factor` (INTER_AREA; INTER_CUBIC if factor < 1); unchanged for 1."""
    if abs(factor - 1.0) < 1e-9:
        return image
    h, w = image.shape[:2]
    size = (max(1, int(round(w / factor))), max(1, int(round(h / factor))))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA if factor > 1 else cv2.INTER_CUBIC)


def spread_starts(length: int, tile: int, count: int) -> list[int]:
    """Start offsets of `count` tiles of side `tile` spread evenly over `length` px, first at 0, last at the end
    (`[0]` when `length <= tile`).

    Computed in float32 and rounded half to even, as `blurnet.tiling.tile_starts` computes them inside the
    exported model, so that `predict` and the SavedModel cut the same tiles (float64 put 1 px apart on some
    lengths).
    """
    if length <= tile:
        return [0]
    steps = np.arange(count, dtype=np.float32) / np.float32(max(count - 1, 1))
    return np.round(steps * np.float32(length - tile)).astype(int).tolist()


def tile_boxes(height: int, width: int, tile: int) -> list[tuple[int, int, int, int]]:
    """(top, left, tile_height, tile_width) of the tiles covering an image (stride about a tile), row-major."""
    th, tw = min(tile, height), min(tile, width)
    rows, cols = (spread_starts(n, tile, math.ceil(n / tile)) for n in (height, width))
    return [(top, left, th, tw) for top in rows for left in cols]


def map_boxes(height: int, width: int, tile: int) -> list[tuple[int, int, int, int]]:
    """(top, left, tile_height, tile_width) of the blur-map tiles: stride tile // 2, spread evenly, row-major."""
    if tile < 2:
        raise ValueError(f"tile must be at least 2 px, got {tile!r}")
    stride = tile // 2
    th, tw = min(tile, height), min(tile, width)
    rows, cols = (spread_starts(n, tile, math.ceil((n - tile) / stride) + 1) for n in (height, width))
    return [(top, left, th, tw) for top in rows for left in cols]


def too_small_message(height: int, width: int) -> str | None:
    """The error message for an image under 32 px on a side, else None."""
    if height < MIN_SIDE or width < MIN_SIDE:
        return f"image is {width} x {height} px; blurnet needs at least {MIN_SIDE} px on each side"
    return None


class Prepared:
    """A photograph ready for the model: scaled image, tile boxes and tile textures.

    `image` may already be `reduction` times smaller than the photograph (a JPEG
    decoded reduced); it is then shrunk by the rest, `scale / reduction`, and
    `source_shape` is the photograph's (height, width).
    """

    def __init__(self, image: np.ndarray, scale: float, tile: int, reduction: int = 1, source_shape=None):
        self.scale = scale
        self.source_shape = tuple(source_shape or image.shape[:2])  # the size of a --mask
        self.image = rescale(image, scale / reduction)
        h, w = self.image.shape[:2]
        self.boxes = tile_boxes(h, w, tile)
        self.textures = self.box_textures(self.boxes)

    def box_textures(self, boxes) -> np.ndarray:
        """Mean gradient magnitude of each box's tile of the scaled image, measured on the tile alone (its edges
        mirrored), as the exported model measures the tiles it cuts (`blurnet.tiling.tile_texture`): measured on the
        whole image, an edge just outside a tile counted in it, and a tile near the flat threshold could count in
        one and not the other."""
        return np.array([float(gradient_magnitude(np.ascontiguousarray(self.image[t : t + th, l : l + tw])).mean())
                         for t, l, th, tw in boxes], np.float64)

    def tiles(self, boxes=None) -> np.ndarray:
        """The tiles of `boxes` (default: the photograph's tiles) as one float32 batch `(n, th, tw, 3)`, 0..255."""
        boxes = self.boxes if boxes is None else boxes
        return np.stack([self.image[t : t + th, l : l + tw] for t, l, th, tw in boxes]).astype(np.float32)


def prepare(image: np.ndarray, tile: int, scale: str | float = "auto", reduction: int = 1, source_shape=None) -> Prepared:
    """Scale and tile an RGB uint8 image; `ImageReadError` when it is (or becomes) too small.

    `reduction` and `source_shape` describe an image decoded smaller than the photograph (`Prepared`).
    """
    h, w = source_shape or image.shape[:2]
    message = too_small_message(h, w)
    if message:
        raise ImageReadError(message)
    factor = auto_scale(h, w) if scale == "auto" else float(scale)
    if reduction > factor:
        raise ValueError(f"reduction must not exceed the scale factor {factor:g}, got {reduction!r}.")
    prepared = Prepared(image, factor, tile, reduction, (h, w))
    sh, sw = prepared.image.shape[:2]
    if too_small_message(sh, sw):
        raise ImageReadError(
            f"image is {w} x {h} px, {sw} x {sh} px after downscaling by {factor:g}; "
            f"blurnet needs at least {MIN_SIDE} px on each side (use a smaller --scale)"
        )
    return prepared


def pyramid(image: np.ndarray, tile: int, scale: str | float = "auto", reduction: int = 1, source_shape=None) -> list[Prepared]:
    """`prepare(image, tile, scale)` and the same photograph `PYRAMID` times smaller (levels under 32 px skipped)."""
    levels = [prepare(image, tile, scale, reduction, source_shape)]
    h, w = levels[0].source_shape
    for factor in PYRAMID[1:]:
        coarser = levels[0].scale * factor
        if min(h, w) / coarser >= MIN_SIDE:
            levels.append(Prepared(image, coarser, tile, reduction, (h, w)))
    return levels


def select_tiles(textures: np.ndarray, budget: int | None = None, min_texture: float = MIN_TEXTURE):
    """Which tiles of a level answer, and how they weigh: `(indices, mean_weights, area_weights)`.

    The textured tiles (texture >= `min_texture`) answer, weighted by their
    texture; if no tile is textured, every tile answers with weight 1. With a
    `budget` and more candidate tiles than that, `budget` picks are drawn by
    systematic sampling with probability proportional to texture (the tiles in
    row-major order, picks evenly spaced along their cumulative texture): a tile
    picked k times weighs k in the mean, which is then an unbiased estimate of
    the texture-weighted mean over all textured tiles, and k / texture in
    `area`, which estimates the fraction of textured tiles per class.
    Flat-only levels take `budget` tiles evenly spread.
    """
    textures = np.asarray(textures, np.float64)
    textured = np.flatnonzero(textures >= min_texture)
    if len(textured) == 0:
        chosen = np.arange(len(textures))
        if budget is not None and len(chosen) > budget:
            chosen = np.unique(np.linspace(0, len(textures) - 1, budget).round().astype(int))
        return chosen, np.ones(len(chosen)), np.ones(len(chosen))
    if budget is None or len(textured) <= budget:
        return textured, textures[textured], np.ones(len(textured))
    cumulative = np.cumsum(textures[textured])
    positions = (np.arange(budget) + 0.5) * cumulative[-1] / budget
    picked, picks = np.unique(np.searchsorted(cumulative, positions, side="right"), return_counts=True)
    return textured[picked], picks.astype(np.float64), picks / textures[textured][picked]


def weighted_answer(probabilities: np.ndarray, mean_weights: np.ndarray, area_weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`(probabilities, area)` of a level from its selected tiles (`select_tiles`' weights)."""
    probabilities = np.asarray(probabilities, np.float64)
    mean = (probabilities * mean_weights[:, None]).sum(axis=0) / mean_weights.sum()
    votes = np.bincount(np.argmax(probabilities, axis=1), weights=area_weights, minlength=probabilities.shape[1])
    return mean / mean.sum(), votes / area_weights.sum()


def choose_level(means: list[np.ndarray], textured: list[bool] | None = None, tolerance: float = PYRAMID_TOLERANCE) -> int:
    """The pyramid level that answers (see the module docstring); when no level is blurred with confidence >= 0.5,
    the finest level with a textured tile (the photograph is sharp).

    `textured[k]` says whether level k has a textured tile; levels without one (their answer is the plain
    mean of flat tiles) answer only when no level has one.
    """
    textured = [True] * len(means) if textured is None or not any(textured) else textured
    confidence = np.array([1.0 - float(m[0]) if t else -1.0 for m, t in zip(means, textured)])
    if confidence.max() < 0.5:  # sharp: the finest level that has a say answers
        return int(np.flatnonzero(textured)[0])
    # the finest blurred level within `tolerance` of the most confident one: a level under 0.5 never answers then
    return int(np.flatnonzero(confidence >= max(0.5, confidence.max() - tolerance))[0])


# --------------------------------------------------------------------------- model answers


def in_chunks(answer, prepared: Prepared, boxes, batch: int = MAX_TILES_PER_BATCH) -> list:
    """`answer(tiles)` for the tiles of `boxes` cut `batch` at a time (float32 tiles of a whole photograph at once
    would take 12 bytes a pixel of every tile: gigabytes for a map at full resolution); the answers in order."""
    return [answer(prepared.tiles(boxes[i : i + batch])) for i in range(0, len(boxes), batch)]


def tile_probabilities(model, prepared: Prepared, boxes=None, batch: int = MAX_TILES_PER_BATCH, views: int | None = None) -> np.ndarray:
    """Model probabilities `(tiles, 4)` for the tiles of a prepared photograph (or for `boxes` of it), `batch`
    tiles cut at a time.

    `views=None`: the model's own call (an export's `serve`, its views inside);
    1, 4 or 8: `model.predict_tiles` with that many views (a model without
    `predict_tiles`, such as a plain callable, is called as it is).
    """
    boxes = prepared.boxes if boxes is None else list(boxes)
    if views is not None and hasattr(model, "predict_tiles"):
        answers = in_chunks(lambda tiles: np.asarray(model.predict_tiles(tiles, views)), prepared, boxes, batch)
    else:
        answers = in_chunks(lambda tiles: np.asarray(model(tiles)), prepared, boxes, batch)
    return np.concatenate([np.zeros((0, len(CLASS_NAMES)), np.float32), *answers], axis=0)


def map_tile_probabilities(model, prepared: Prepared, batch: int = MAX_TILES_PER_BATCH) -> tuple[list, np.ndarray, np.ndarray]:
    """The blur-map tiles of a prepared photograph: (`map_boxes` of its scaled image, probabilities `(n, 4)`, textures)."""
    h, w = prepared.image.shape[:2]
    boxes = map_boxes(h, w, int(model.image_size))
    return boxes, tile_probabilities(model, prepared, boxes, batch), prepared.box_textures(boxes)


def mask_probability(prepared: Prepared, boxes, probabilities) -> np.ndarray:
    """Per-pixel blur probability (float32, 0..1) at the photograph's original size, from its map tiles: what `--mask` thresholds."""
    from blurnet.blurmap import blur_probability_map, resize_probability

    return resize_probability(blur_probability_map(prepared.image.shape[:2], boxes, probabilities), *prepared.source_shape)


def classify_levels(model, levels: list[Prepared], views: int | None = None, budget: int | None = None) -> dict:
    """Answer a photograph from its pyramid levels: the record fields `probabilities`, `scale`, `tiles`, `area`.

    `views` and `budget` as in `tile_probabilities` and `select_tiles`; None and
    None is the full computation (every textured tile, the model's own views).
    """
    estimates = getattr(model, "has_parameters", False)
    answers, selections = [], []
    for level in levels:
        chosen, mean_weights, area_weights = select_tiles(level.textures, budget)
        boxes = [level.boxes[i] for i in chosen]
        raw = None
        if estimates:  # the parameters come from the same passes as the probabilities (full: the model's own views)
            answered = in_chunks(lambda tiles: model.answer_tiles(tiles, model.views if views is None else views), level, boxes)
            probs, raw = (np.concatenate([a[i] for a in answered], axis=0) for i in (0, 1))
        else:
            probs = tile_probabilities(model, level, boxes, views=views)
        broken = int((~np.isfinite(probs).all(axis=1)).sum())
        if broken:  # NaN would pass for a class (argmax) or break the choice of level
            raise ValueError(f"the model answered not finite probabilities (NaN or infinity) for {broken} of "
                             f"{len(probs)} tiles: is the export damaged?")
        answers.append((*weighted_answer(probs, mean_weights, area_weights), len(chosen)))
        selections.append((boxes, mean_weights, raw))
    textured = [bool((level.textures >= MIN_TEXTURE).any()) for level in levels]
    k = choose_level([mean for mean, _, _ in answers], textured)
    mean, area, used = answers[k]
    fields = {"probabilities": mean, "scale": levels[k].scale, "tiles": used, "area": area}
    if estimates:
        boxes, weights, raw = selections[k]
        fields["blur"] = blur_record(CLASS_NAMES[int(np.argmax(mean))], weighted_median(raw, weights), levels[k].scale)
    return fields


def weighted_median(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Per-column weighted median of `values` `(n, k)` with `weights` `(n,)`: the smallest value whose
    cumulative weight reaches half the total (as `blurnet.tiling.texture_weighted_median` in the export)."""
    values, weights = np.asarray(values, np.float64), np.asarray(weights, np.float64)
    order = np.argsort(values, axis=0, kind="stable")
    cumulative = np.cumsum(weights[order], axis=0)
    first = np.argmax(cumulative >= 0.5 * cumulative[-1], axis=0)
    columns = np.arange(values.shape[1])
    return values[order[first, columns], columns]


def blur_record(class_name: str, raw: np.ndarray, scale: float) -> dict:
    """The record's `blur`: the parameters of `class_name` from the head's raw `(5,)` answer, sizes in pixels of the
    original photograph (times the level's `scale`), the angle in degrees (0 to 180, counter-clockwise)."""
    sigma, length, cos2, sin2, radius = (float(v) for v in raw)
    blur = {"class": class_name}
    if class_name == "gaussian":
        blur["sigma_px"] = round(max(sigma, 0.0) * scale, 2)
    elif class_name == "motion":
        blur.update(length_px=round(max(length, 0.0) * scale, 2), angle_deg=round(float(angle_degrees(cos2, sin2)), 1) % 180.0)
    elif class_name == "defocus":
        blur["radius_px"] = round(max(radius, 0.0) * scale, 2)
    return blur
