"""What `blurnet predict` classifies: paths, folders and glob patterns (or arrays) as items.

Nothing here imports TensorFlow, so the command line checks its arguments before the
model loads. An argument that names nothing becomes an item with an error message;
an item that cannot be read or processed gets one from `describe_error`.
"""
from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Iterable

import numpy as np

from blurnet.classify import auto_scale
from data_pipeline.sources import (IMAGE_EXTENSIONS, ImageReadError, decode_reduced, jpeg_orientation, jpeg_size, list_image_files,
                                   read_image_bytes, to_rgb8)

REDUCTIONS = (8, 4, 2)

_GLOB_CHARS = set("*?[")


def _argument_kind(path: str) -> str:
    """How `expand_paths` reads a command-line argument: "folder", "file", "pattern" (a glob pattern that is no
    existing path) or "missing"."""
    if os.path.isdir(path):
        return "folder"
    if os.path.exists(path):
        return "file"
    return "pattern" if _GLOB_CHARS & set(path) else "missing"


def expand_paths(paths: Iterable[str | os.PathLike], seen: set[str] | None = None) -> list[tuple[str, str | None]]:
    """Files named by `paths` (files, folders recursively, glob patterns), in order.

    Returns `(path, error)` pairs: `error` is None for a file to classify, or a
    message for an argument that names nothing (missing path, empty pattern or
    folder). A file named explicitly is kept whatever its extension; folders
    contribute their files with an image extension. Duplicates are dropped:
    those already in `seen` too, which then gains what is returned (so that
    several calls sharing one set list each file once).
    """
    out: list[tuple[str, str | None]] = []
    seen = set() if seen is None else seen

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
        kind = _argument_kind(path)
        if kind == "folder":
            add_folder(path)
        elif kind == "file":
            add(path)
        elif kind == "pattern":
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


def folder_arguments(paths: Iterable[str | os.PathLike]) -> list[str]:
    """The folders `paths` name: a folder itself, or for a glob pattern (as `expand_paths` reads it) the folder
    before its first wildcard (`shoots` for `shoots/day*/*.jpg`). The roots below which `predict --sort-into` keeps
    each photograph's path, so that `shoots/day1/a.jpg` and `shoots/day2/a.jpg` stay apart."""
    folders = []
    for raw in paths:
        path = os.fspath(raw)
        kind = _argument_kind(path)
        if kind == "folder":
            folders.append(path)
        elif kind == "pattern":
            parts = Path(path).parts
            fixed = next(i for i, part in enumerate(parts) if _GLOB_CHARS & set(part))
            if fixed and os.path.isdir(Path(*parts[:fixed])):  # "*.jpg" names no folder: its files keep their names
                folders.append(str(Path(*parts[:fixed])))
    return folders


def list_items(paths_or_arrays) -> list[tuple[str, object, str | None]]:
    """`(name, source, error)` per input: paths expanded by `expand_paths`, arrays named "<array 0>", ...

    `paths_or_arrays`: a path, an array, or a list of them. `source` is the path or
    the array; `error` is None, or the message for an argument that names nothing.
    A file named again (by another argument, folder or pattern) is listed once; so is a missing path named twice
    (one error).
    """
    if isinstance(paths_or_arrays, (str, os.PathLike, np.ndarray)):
        paths_or_arrays = [paths_or_arrays]
    items: list[tuple[str, object, str | None]] = []
    seen: set[str] = set()  # shared by every path argument: a file is listed once
    array_index = 0
    for entry in paths_or_arrays:
        if isinstance(entry, np.ndarray):
            items.append((f"<array {array_index}>", entry, None))
            array_index += 1
            continue
        items.extend((path, path, error) for path, error in expand_paths([entry], seen))
    return items


def array_to_rgb8(array) -> np.ndarray:
    """An in-memory image (HxW gray, HxWx3 RGB or HxWx4 RGBA; uint8, uint16 or float 0..1, see `to_rgb8`) as RGB uint8."""
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[2] in (3, 4):
        array = array[:, :, 2::-1]  # RGB(A) -> BGR, the order to_rgb8 expects; alpha dropped
    return to_rgb8(array)


def load_for_scale(source, scale: str | float) -> tuple[np.ndarray, int, tuple[int, int]]:
    """An item's image for a downscale `scale` ('auto' or a factor, as `blurnet.classify.prepare` takes it):
    `(image, reduction, (height, width) of the photograph)`.

    A JPEG file is decoded `reduction` = 8, 4 or 2 times smaller, the largest of
    them not above the factor (`data_pipeline.sources.decode_reduced`); the rest
    of the factor is left to `blurnet.classify.prepare`. Anything else is decoded
    in full (`reduction` 1).
    """
    if isinstance(source, np.ndarray):
        image = array_to_rgb8(source)
        return image, 1, image.shape[:2]
    data = read_image_bytes(source)
    size = jpeg_size(data)
    if size is None or min(size) == 0:
        image = decode_reduced(data, 1, str(source))
        return image, 1, image.shape[:2]
    factor = auto_scale(*size) if scale == "auto" else float(scale)
    reduction = next((r for r in REDUCTIONS if r <= factor), 1)
    image = decode_reduced(data, reduction, str(source))
    h, w = size
    if jpeg_orientation(data) >= 5:  # the decoder applied an EXIF quarter turn: the frame header's sides swap
        h, w = w, h
    return image, reduction, (h, w)


def describe_error(error: BaseException) -> str:
    """The message recorded for an input that could not be classified."""
    if isinstance(error, ImageReadError):
        return str(error)
    if isinstance(error, MemoryError):
        return "not enough memory to process this image"
    text = str(error).strip().splitlines()
    return f"cannot process this image ({type(error).__name__}: {text[-1] if text else 'no details'})"
