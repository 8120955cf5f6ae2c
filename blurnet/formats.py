"""Other formats of an export: `blurnet export MODEL_DIR --format F [--out DIR]`.

A blurnet export (`blurnet.export`) is a TensorFlow SavedModel whose `serve`
averages views and tiles large inputs. The formats written here hold the plain
network instead (one view, one tile, the same preprocessing inside), each in
its own folder with a copy of the export's `blurnet.json` beside the model
file, so a reader knows the classes and the tile size:

| format | file | for |
| --- | --- | --- |
| `keras` | `model.keras` | Keras 3 on any backend (`python -m blurnet.train_keras --init-from DIR`) |

The folder is written atomically: an interrupted export leaves no half-written
folder, and an older one at the same place stays until the new one is complete.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from blurnet.atomic import atomic_directory

FORMAT_FILES = {"keras": "model.keras"}


def default_out(model_dir: str | os.PathLike, fmt: str) -> Path:
    """Where `blurnet export` writes by default: `<MODEL_DIR>-<format>` beside the export."""
    model_dir = Path(model_dir)
    return model_dir.with_name(f"{model_dir.name}-{fmt}")


def _write_keras(model, folder: Path) -> None:
    model.save(folder / FORMAT_FILES["keras"])


WRITERS = {"keras": _write_keras}


def export_format(model_dir: str | os.PathLike, fmt: str, out: str | os.PathLike | None = None) -> Path:
    """Write the export in `model_dir` as `fmt` (one of `FORMAT_FILES`) into the folder `out`; returns the model file."""
    from blurnet.export import METADATA_FILE, model_from_export

    if fmt not in WRITERS:
        raise ValueError(f"format must be one of {sorted(WRITERS)}, got {fmt!r}.")
    out = Path(out) if out is not None else default_out(model_dir, fmt)
    if out.resolve() == Path(model_dir).resolve():
        raise ValueError(f"--out {str(out)!r} is the export itself; choose another folder.")
    model = model_from_export(model_dir)
    with atomic_directory(out) as tmp:
        WRITERS[fmt](model, tmp)
        shutil.copy(Path(model_dir) / METADATA_FILE, tmp / METADATA_FILE)
    return out / FORMAT_FILES[fmt]
