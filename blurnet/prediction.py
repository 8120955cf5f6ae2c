"""Classify the blur of images (`blurnet predict`, `blurnet.predict`): one record per input.

`predict` reads the inputs (`blurnet.inputs`), answers each photograph
(`blurnet.classify`, whose docstring explains scale, tiles, aggregation, the
scale pyramid and the record fields) and optionally writes blur maps and masks
(`blurnet.blurmap`). Every input yields one record: `{path, label,
probabilities, scale, tiles, area}` (plus `blur` with a parameter head) or `{path, error}`; only a missing or broken
model raises (`NotAnExportError`). `format_records` turns records into a table,
CSV or JSON.
"""
from __future__ import annotations

import concurrent.futures
import os
from pathlib import Path
from typing import Callable

import numpy as np

from blurnet.classify import FAST_VIEWS, MIN_TEXTURE, TILE_BUDGET, Prepared, classify_levels, map_tile_probabilities, mask_probability, parse_scale, pyramid
from blurnet.errors import NotAnExportError
from blurnet.inputs import describe_error, list_items, load_for_scale
from data_pipeline.classes import CLASS_NAMES


# --------------------------------------------------------------------------- model


_MODEL_CACHE: dict = {}


def load_model(model=None):
    """An `ExportedModel` from None (the default), a folder, or an already loaded model (returned as is);
    for a .onnx or .tflite file, or a folder holding one and no SavedModel, an `OnnxModel` or
    `LiteRTModel` (`blurnet.runtimes`: TensorFlow is not imported).

    Loaded folders are cached per process, keyed by path and by the identity (inode, size, time) of the model file
    and `blurnet.json`.
    """
    from blurnet.runtimes import load_runtime, runtime_file

    if model is not None and not isinstance(model, (str, os.PathLike)):
        return model
    runtime = runtime_file(model) if model is not None else None
    if runtime is None:
        from blurnet.export import ExportedModel, default_model_dir
    folder = Path(model) if model is not None else default_model_dir()
    metadata = (runtime.parent if runtime is not None else folder) / "blurnet.json"  # a runtime file's sits beside it
    try:  # a replaced or edited file (even one copied with its old times kept) gives another key
        key = (str(folder.resolve()), *(_file_identity(f) for f in (runtime or folder / "saved_model.pb", metadata)))
    except OSError:
        key = None
    if key is not None and key in _MODEL_CACHE:
        return _MODEL_CACHE[key]
    loaded = load_runtime(runtime) if runtime is not None else ExportedModel(folder)
    if key is not None:
        _MODEL_CACHE[key] = loaded
    return loaded


def _file_identity(path: Path) -> tuple[int, int, int, int]:
    """What changes when a file is replaced or rewritten: its inode, device, size and modification time."""
    status = path.stat()
    return status.st_ino, status.st_dev, status.st_size, status.st_mtime_ns


def numbered_path(target: str | os.PathLike, n: int, count: int) -> Path:
    """Where the output file of the `n`-th (0-based) of `count` inputs goes: `target` for one input, else
    `<stem>-<n+1><suffix>`."""
    target = Path(target)
    return target if count == 1 else target.with_name(f"{target.stem}-{n + 1}{target.suffix or '.png'}")


def check_outputs_spare_inputs(inputs: list, count: int, output=None, map_path=None, mask_path=None) -> None:
    """`ValueError` naming both when an output file (`output`, or a map or mask of one of `count` inputs,
    `numbered_path`) is one of the input files `inputs` (the same file, links followed), or when two of those
    outputs would be the same file: writing it would destroy a photograph or a result of this run."""
    def identity(path):
        try:
            status = os.stat(path)
        except (OSError, ValueError):
            return None
        return status.st_dev, status.st_ino

    photographs = {identity(p): p for p in inputs if isinstance(p, (str, os.PathLike)) and identity(p) is not None}
    planned = [("--output", Path(output))] if output is not None else []
    for option, target in (("--map", map_path), ("--mask", mask_path)):
        if target is not None:
            planned += [(option, numbered_path(target, n, count)) for n in range(count)]
    writers = {}
    for option, path in planned:  # each option's own names differ (`numbered_path`); links followed
        first = writers.setdefault(os.path.normcase(os.path.realpath(path)), option)
        if first != option:
            raise ValueError(f"{first} and {option} would both write {os.path.abspath(path)!r}; give them different names.")
    for option, path in planned:
        photograph = photographs.get(identity(path))
        if photograph is not None:
            raise ValueError(f"{option} {str(path)!r} would overwrite the input photograph {str(photograph)!r}; "
                             "choose another name.")


# --------------------------------------------------------------------------- records


def _record(path: str, probabilities: np.ndarray, scale: float, tiles: int, area: np.ndarray, blur: dict | None = None) -> dict:
    probabilities = [float(p) for p in probabilities]
    record = {
        "path": path,
        "label": CLASS_NAMES[int(np.argmax(probabilities))],
        "probabilities": dict(zip(CLASS_NAMES, probabilities)),
        "scale": round(float(scale), 6),
        "tiles": int(tiles),
        "area": {name: round(float(a), 4) for name, a in zip(CLASS_NAMES, area)},
    }
    if blur is not None:  # a model with the parameter head
        record["blur"] = blur
    return record


BLUR_FIELDS = ("sigma_px", "length_px", "angle_deg", "radius_px")


def describe_blur(blur: dict | None) -> str:
    """The table's `blur` column: `sigma 2.1 px`, `length 37.2 px at 12.5 deg`, `radius 9 px`; empty otherwise."""
    if not blur:
        return ""
    if "sigma_px" in blur:
        return f"sigma {blur['sigma_px']:g} px"
    if "length_px" in blur:
        return f"length {blur['length_px']:g} px at {blur['angle_deg']:g} deg"
    if "radius_px" in blur:
        return f"radius {blur['radius_px']:g} px"
    return ""


def _prepare_item(item, tile: int, scale):
    """`(name, pyramid levels, None)` for an item to classify, `(name, None, error)` otherwise."""
    name, source, error = item
    if error is not None:
        return name, None, error
    try:
        image, reduction, shape = load_for_scale(source, scale)
        return name, pyramid(image, tile, scale, reduction, shape), None
    except Exception as exc:  # noqa: BLE001 - every bad input becomes a record
        return name, None, describe_error(exc)


def _prepared_in_order(items, tile: int, scale, workers: int):
    """Yield `_prepare_item` results in input order; the next items are read and tiled in `workers` threads meanwhile."""
    with concurrent.futures.ThreadPoolExecutor(max(1, workers)) as pool:
        pending: list[concurrent.futures.Future] = []
        queue = iter(items)
        for item in queue:
            pending.append(pool.submit(_prepare_item, item, tile, scale))
            if len(pending) > workers:
                break
        while pending:
            result = pending.pop(0).result()
            for item in queue:
                pending.append(pool.submit(_prepare_item, item, tile, scale))
                break
            yield result


def _onto(boxes, level: Prepared, working: Prepared) -> list[tuple[int, int, int, int]]:
    """`(top, left, height, width)` boxes of a pyramid level in the pixels of the working level, kept inside it.

    Scaled by the ratio of the two images' sides (not of their scales, which rounding of the sides departs from),
    so that boxes that cover the level cover the working image to its last row and column.
    """
    if level is working:
        return list(boxes)
    (h, w), (lh, lw) = working.image.shape[:2], level.image.shape[:2]
    fy, fx = h / lh, w / lw
    out = []
    for top, left, th, tw in boxes:
        t, l = min(int(round(top * fy)), h - 1), min(int(round(left * fx)), w - 1)
        out.append((t, l, min(int(round((top + th) * fy)), h) - t, min(int(round((left + tw) * fx)), w) - l))
    return out


def _write_map(model, record: dict, levels: list[Prepared], n: int, count: int, map_path, mask_path) -> None:
    """Write the blur map and/or mask of the `n`-th of `count` inputs (`numbered_path`) from the pyramid level that
    answered it (blur beyond the training ranges is read where the answer was), the map drawn over the working scale
    (a coarser level's tiles enlarged onto it); the paths written go into its record, or what went wrong into its
    `map_error`."""
    from blurnet.blurmap import write_blur_map, write_blur_mask

    prepared = min(levels, key=lambda level: abs(level.scale - record["scale"]))  # the record's scale is rounded
    try:
        boxes, probs, textures = map_tile_probabilities(model, prepared)
    except Exception as exc:  # noqa: BLE001
        record["map_error"] = describe_error(exc)
        return
    for key, target in (("map", map_path), ("mask", mask_path)):
        if target is None:
            continue
        where = numbered_path(target, n, count)
        try:
            if key == "map":
                written = write_blur_map(where, levels[0].image, _onto(boxes, prepared, levels[0]), probs, textures, MIN_TEXTURE)
            else:
                written = write_blur_mask(where, mask_probability(prepared, boxes, probs))
            record[key] = str(written)
        except Exception as exc:  # noqa: BLE001 - a file that cannot be written costs this file only
            record["map_error"] = f"cannot write {where} ({type(exc).__name__}: {exc})"


def predict(
    paths_or_arrays,
    model=None,
    scale: str | float = "auto",
    *,
    map_path: str | os.PathLike | None = None,
    mask_path: str | os.PathLike | None = None,
    progress: Callable[[int], None] | None = None,
    workers: int = 2,
    full: bool = False,
) -> list[dict]:
    """Classify the blur of images; one record per image (steps and record fields: `blurnet.classify`).

    `paths_or_arrays`: a path, an array, or a list of them. Paths may be files,
    folders (recursive) or glob patterns; arrays are RGB(A) or gray, uint8,
    uint16 or float 0..1, and get paths "<array 0>", "<array 1>", ...
    `model`: None (the default export), an export folder, or an `ExportedModel`.
    `scale`: "auto" or a downscale factor. `map_path`: also write per-tile blur
    maps (see `blurnet.blurmap`): to that file for one image, else to
    `<stem>-<n><suffix>` per classified image. `mask_path`: also write binary
    blur masks (white = blurred, the photograph's size), named the same way.
    Records get "map" / "mask" (the path written), each written as soon as its
    photograph is classified, or "map_error". `ValueError` before anything is
    classified when such a file, numbered by input position, would be an input
    photograph (`check_outputs_spare_inputs`). `progress(n)` is called after each
    image. Decoding and tiling of the next images overlap the model's work
    (`workers` threads). By default each pyramid level answers from at most
    `TILE_BUDGET` tiles sampled by texture, each seen in `FAST_VIEWS` view
    (`blurnet.classify.select_tiles`); `full=True` uses every textured tile
    and the export's own views (8 for the bundled model): the reference the
    default is measured against (`benchmarks/predict.py`). A Ctrl-C raises `PredictInterrupted`, which carries
    the records made before it.
    """
    scale = parse_scale(scale)
    loaded = load_model(model)
    if hasattr(loaded, "load_single_view") and (not full or getattr(loaded, "has_parameters", False)):
        # the network the fast path and the parameter head answer with: a broken export fails here, not as an
        # error record per photograph
        loaded.load_single_view()
    tile = int(loaded.image_size)

    items = list_items(paths_or_arrays)
    want_maps = map_path is not None or mask_path is not None
    if want_maps:
        check_outputs_spare_inputs([source for _, source, _ in items], len(items), None, map_path, mask_path)

    records: list[dict] = []
    try:
        for record in _records(loaded, items, tile, scale, workers, full, map_path, mask_path, progress):
            records.append(record)
    except KeyboardInterrupt as stop:
        raise PredictInterrupted(records, len(items)) from stop
    return records


class PredictInterrupted(KeyboardInterrupt):
    """A Ctrl-C during `predict`: `.records` holds the records of the inputs classified before it (in input order,
    maps and masks written), `.total` how many inputs there were."""

    def __init__(self, records: list[dict], total: int):
        super().__init__(f"interrupted after {len(records)} of {total} inputs")
        self.records, self.total = records, total


def _records(loaded, items, tile: int, scale, workers: int, full: bool, map_path, mask_path, progress):
    """`predict`'s loop: each input's record, in input order, as soon as it is made (its map and mask written);
    `progress(1)` after each."""
    want_maps = map_path is not None or mask_path is not None
    for n, (name, levels, error) in enumerate(_prepared_in_order(items, tile, scale, workers)):
        record = {"path": name, "error": error}
        if levels is not None:
            try:
                record = _record(name, **classify_levels(loaded, levels, *((None, None) if full else (FAST_VIEWS, TILE_BUDGET))))
            except NotAnExportError:  # the model, not this photograph: no record would be right
                raise
            except Exception as exc:  # noqa: BLE001
                record = {"path": name, "error": describe_error(exc)}
            else:
                if want_maps:
                    _write_map(loaded, record, levels, n, len(items), map_path, mask_path)
        yield record
        if progress is not None:
            progress(1)


# --------------------------------------------------------------------------- output formats


CSV_FIELDS = ("path", "label", *CLASS_NAMES, "scale", "tiles", *(f"area_{c}" for c in CLASS_NAMES), "error")
#: With a parameter head, the blur parameters follow (`blur_sigma_px`, ...), empty where they do not apply.
CSV_BLUR_FIELDS = tuple(f"blur_{name}" for name in BLUR_FIELDS)
#: With `--map` or `--mask`, where each photograph's map and mask went, or why they could not be written.
CSV_MAP_FIELDS = ("map", "mask", "map_error")


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
        with_blur = any("blur" in r for r in records)
        with_maps = any(field in r for r in records for field in CSV_MAP_FIELDS)
        writer.writerow(CSV_FIELDS + (CSV_BLUR_FIELDS if with_blur else ()) + (CSV_MAP_FIELDS if with_maps else ()))
        for r in records:
            probs = r.get("probabilities", {})
            writer.writerow(
                [r["path"], r.get("label", "")]
                + [f"{probs[c]:.6f}" if c in probs else "" for c in CLASS_NAMES]
                + [f"{r['scale']:g}" if "scale" in r else "", r.get("tiles", "")]
                + [f"{r['area'][c]:.4f}" if "area" in r else "" for c in CLASS_NAMES]
                + [r.get("error", "")]
                + ([f"{r['blur'][f]:g}" if f in r.get("blur", {}) else "" for f in BLUR_FIELDS] if with_blur else [])
                + ([r.get(field, "") for field in CSV_MAP_FIELDS] if with_maps else [])
            )
        return buffer.getvalue()
    if fmt != "table":
        raise ValueError(f"unknown format {fmt!r}; expected table, csv or json")
    width = max([len("path")] + [len(r["path"]) for r in records])
    header = f"{'path':<{width}}  {'label':<8}  " + "  ".join(f"{c:>8}" for c in CLASS_NAMES) + f"  {'scale':>6}  {'tiles':>5}  {'blurred':>7}"
    header += "  blur" if any("blur" in r for r in records) else ""
    lines = [header, "-" * len(header)]
    for r in records:
        if "error" in r:
            lines.append(f"{r['path']:<{width}}  ERROR: {r['error']}")
        else:
            probs = "  ".join(f"{r['probabilities'][c]:>8.3f}" for c in CLASS_NAMES)
            blurred = 1.0 - r["area"]["sharp"]
            blur = describe_blur(r.get("blur"))
            lines.append(f"{r['path']:<{width}}  {r['label']:<8}  {probs}  {r['scale']:>6.3g}  {r['tiles']:>5d}  {blurred:>7.0%}"
                         + (f"  {blur}" if blur else ""))
    return "\n".join(lines) + "\n"


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write `text` to `path` in UTF-8 via a temporary file and `os.replace`; a file name that is not valid UTF-8
    keeps its own bytes (`surrogateescape`), as on standard output."""
    from blurnet.atomic import atomic_file

    with atomic_file(path) as tmp:
        tmp.write_bytes(text.encode("utf-8", "surrogateescape"))
    return Path(path)
