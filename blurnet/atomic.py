"""Write files and folders so that an interrupted run never leaves half of one behind.

Both context managers hand out a hidden temporary path beside the target; the
target is replaced by a rename only when the block finishes without an error.
An older file or folder at the target stays intact until then. A file is synced
to disk before the rename and its folder after it, so that a power cut leaves
either the old file or the new one, never an empty one.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from pathlib import Path


#: Bytes of a file name that a temporary name beside it keeps: most file systems allow 255, and the temporary
#: name adds a dot, a tag, 8 hex digits and the suffixes.
NAME_BYTES_KEPT = 180


def shortened(name: str, limit: int = NAME_BYTES_KEPT) -> str:
    """`name` cut to at most `limit` bytes of UTF-8 (whole characters), for temporary names built from it."""
    encoded = name.encode("utf-8", "surrogateescape")
    return name if len(encoded) <= limit else encoded[:limit].decode("utf-8", "ignore")


def _sibling(target: Path, kind: str) -> Path:
    # Keep every suffix (".weights.h5"): some writers check the whole ending; a long one ("a.<200 bytes>.csv") the last.
    suffixes = "".join(target.suffixes)
    if len(suffixes.encode("utf-8", "surrogateescape")) > 40:
        suffixes = shortened(target.suffix, 40)
    return target.with_name(f".{shortened(target.name)}.{kind}-{uuid.uuid4().hex[:8]}{suffixes}")


def fsync_path(path: str | os.PathLike) -> None:
    """Flush a written file, or a folder's entries (a rename in it), to disk; where a folder cannot be opened
    (Windows) or synced, nothing is done."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_file(target: str | os.PathLike):
    """Yield a temporary path to write; it becomes `target` (same suffixes) on success, synced to disk. A `target`
    that is a symbolic link is written through: the file it points to is replaced, the link stays."""
    target = Path(os.path.realpath(target)) if os.path.islink(target) else Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _sibling(target, "tmp")
    try:
        yield tmp
        if os.path.exists(target) and os.path.exists(tmp):  # a file replaced keeps its permissions (a private one stays so)
            shutil.copymode(target, tmp)
        fsync_path(tmp)
        os.replace(tmp, target)
        fsync_path(target.parent)
    finally:
        if tmp.exists():
            tmp.unlink()


def check_writable(target: str | os.PathLike, folder: bool = False) -> None:
    """`ValueError` naming `target` when it cannot be written as a file (or, with `folder`, filled as a folder):
    it exists as the other kind, or the nearest folder that exists on its way is not a folder or not writable.
    Checked before a long run, so that its results are not lost at the end."""
    target = Path(target)
    kind = "folder" if folder else "file"
    if os.path.islink(target) and not os.path.exists(target):
        raise ValueError(f"cannot write the {kind} {str(target)!r}: it is a link to nothing.")
    if os.path.lexists(target) and os.path.isdir(target) != folder:
        raise ValueError(f"cannot write the {kind} {str(target)!r}: it exists and is {'a file' if folder else 'a folder'}.")
    nearest = target if folder and os.path.isdir(target) else target.parent
    while not os.path.lexists(nearest) and nearest != nearest.parent:
        nearest = nearest.parent
    if not os.path.isdir(nearest):
        raise ValueError(f"cannot write the {kind} {str(target)!r}: {str(nearest)!r} is not a folder.")
    if not os.access(nearest, os.W_OK | os.X_OK):
        raise ValueError(f"cannot write the {kind} {str(target)!r}: the folder {str(nearest)!r} is not writable.")


def check_replaceable(target: str | os.PathLike, marker: str | tuple[str, ...]) -> None:
    """`ValueError` naming `target` unless it is missing, an empty folder, or a folder holding `marker` (the file
    every folder of its kind holds, or all of several: `saved_model.pb` and `blurnet.json` for an export,
    `metrics.json` for a report): a folder of anything else (several exports, another program's SavedModel, a
    user's files) is never replaced. Also `check_writable`: a folder on its way that is a file, or one that cannot
    be written (the folder the replacement is renamed in), is named before any work."""
    target = Path(target)
    markers = (marker,) if isinstance(marker, str) else tuple(marker)
    if os.path.lexists(target):
        if not target.is_dir():
            raise ValueError(f"{str(target)!r} exists and is not a folder; choose another output folder.")
        missing = [name for name in markers if not (target / name).is_file()]
        if missing and any(target.iterdir()):
            raise ValueError(f"{str(target)!r} exists and holds files but no {' and no '.join(missing)}: it is not an "
                             f"earlier output of this kind, and replacing it would delete them; choose another output folder.")
    check_writable(target.parent if os.path.lexists(target) else target, folder=True)


def _copy_others(source: Path, destination: Path, except_names) -> None:
    """Copy the entries of `source` that `destination` lacks and that are not in `except_names` (links as links)."""
    for entry in source.iterdir():
        if entry.name not in except_names and not os.path.lexists(destination / entry.name):
            if entry.is_dir() and not entry.is_symlink():
                shutil.copytree(entry, destination / entry.name, symlinks=True)
            else:
                shutil.copy2(entry, destination / entry.name, follow_symlinks=False)


def check_apart(first: str | os.PathLike, second: str | os.PathLike, what: str) -> None:
    """`ValueError` naming both when the folders `first` and `second` are one, or one lies inside the other
    (links followed): replacing one would delete or fill the other. `what` names them, e.g. "--out and the model"."""
    a, b = Path(os.path.realpath(first)), Path(os.path.realpath(second))
    if a == b or a in b.parents or b in a.parents:
        raise ValueError(f"{what} would overlap ({str(first)!r} and {str(second)!r}): choose folders apart.")


@contextlib.contextmanager
def atomic_directory(target: str | os.PathLike, marker: str | tuple[str, ...], keep_others_except=None):
    """Yield an empty temporary folder to fill; it replaces `target` on success. `target` must be missing, empty or
    an earlier folder of the same kind, one holding `marker` (`check_replaceable`, checked before anything is made
    and again just before the swap, in case files arrived meanwhile).

    With `keep_others_except` (names), the files and folders of the replaced `target` that the new folder does not
    hold and that are not among those names (a model card, a user's notes beside an export) are copied into it.
    When the second check refuses or a file cannot be copied, the finished folder is kept as `<target>.new` (or
    `<target>.new-<8 hex digits>`) beside `target`, which stays as it was, and the `ValueError` says where.
    """
    target = Path(target)
    check_replaceable(target, marker)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp, old = _sibling(target, "tmp"), _sibling(target, "old")
    tmp.mkdir()
    try:
        yield tmp
        try:
            check_replaceable(target, marker)
            if target.exists() and keep_others_except is not None:
                _copy_others(target, tmp, keep_others_except)
        except (ValueError, OSError) as error:  # hours of work must not go with the temporary folder
            kept = target.with_name(target.name + ".new")
            kept = kept if not os.path.lexists(kept) else target.with_name(f"{target.name}.new-{uuid.uuid4().hex[:8]}")
            os.replace(tmp, kept)
            raise ValueError(f"{str(target)!r} was not replaced ({error}); the new output is in {str(kept)!r}") from None
        if target.exists():
            os.replace(target, old)
        os.replace(tmp, target)
    except BaseException:
        if old.exists() and not target.exists():
            os.replace(old, target)
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if target.exists():  # the new folder, or the earlier one put back, is in place: the earlier copy can go
            shutil.rmtree(old, ignore_errors=True)
