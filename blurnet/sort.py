"""Sort classified photographs into folders by label (`blurnet predict DIR --sort-into OUT`).

`sort_records(records, out, roots=...)` takes the records `blurnet.predict`
returns (`{path, label, ...}` or `{path, error}`) and puts every classified
photograph into `OUT/<label>/`, keeping its path relative to the folder argument
it was found under (`roots`); a file not under any of them (a file or glob
argument) keeps only its name. The rules:

- **Nothing is overwritten.** When the destination name is taken, the
  photograph gets the first free numbered name: `name-1.jpg`, `name-2.jpg`, ...
  A destination file that is byte-for-byte the source (same size and SHA-256)
  counts as already sorted: it is reused and no second copy is made, so a run
  that was interrupted can simply be repeated.
- **No partial file under a final name.** A photograph is copied to a hidden
  temporary file in the destination folder (`.NAME.blurnet-part-XXXXXXXX`),
  flushed to disk (fsync), and only then given its final name by a hard link
  that fails instead of replacing an existing file; where the file system has
  no hard links (FAT, exFAT, some network shares) by a rename that fails
  likewise (`renameat2(RENAME_NOREPLACE)` on Linux, `renamex_np(RENAME_EXCL)`
  on macOS, a plain rename on Windows); only where none of these exists is the
  name checked first and then renamed, which another program writing the same
  name at that instant could lose its file to. The folder is then synced as
  well, and every folder made for the copy into its parent. The copy
  keeps the modification time of the source, not its permissions. A run killed
  during a copy can leave such a hidden temporary file behind; it can be deleted.
- **Moves are verified.** `move=True` deletes a source only after its copy
  exists under its final name and has been read back: its size and SHA-256 must
  match the source's. When the source cannot be deleted (a read-only folder),
  the source and the copy both stay, the log says `move-failed`, and the other
  photographs go on. A copy that does not match is removed and the source kept;
  a source that changed while it was copied (size, time or file) is kept beside
  the copy (`move-failed`). A symbolic link in OUT never counts as a sorted copy.
- **Unreadable files stay where they are.** Records with an `error` are not
  touched; they are listed with their error (status `unreadable`).
- **OUT inside DIR is safe.** Files already under `OUT` are never sorted again:
  `split_inside` leaves them out before classification and `sort_records` skips
  any that reach it (status `skipped`), on case-insensitive file systems too.
- **Log.** A CSV log, `OUT/blurnet-sort-YYYYMMDD-HHMMSS.csv` (local time; `-1`,
  `-2`, ... appended when that name exists), lists every record with the
  columns `source, destination, label, action, status, message`
  (absolute paths; action `copy`, `move`, `keep` or `skip`; status `ok`,
  `failed`, `move-failed`, `unreadable` or `skipped`). It is written once at the
  end, atomically (temporary file, fsync, no-replace rename), in UTF-8; a file
  name that is not valid UTF-8 is written with its own bytes (`surrogateescape`).
- **An interrupted sort still logs.** When the run stops early (Ctrl-C, or an
  error that is not about one photograph), the log is written with the rows
  done so far and a last row with action `stop` and status `interrupted`;
  the photographs of later records were not touched. A Ctrl-C then raises
  `SortInterrupted`, another error is raised as it was; either carries the
  `SortResult` as `.sort_result`. A photograph whose transfer
  was cut short has no row: its copy is complete under its final name or
  absent, and its source is kept unless the move had been verified. A log
  that cannot be written (a full disk) raises its `OSError` with the
  `SortResult` likewise, and `blurnet predict` prints the log instead.
- **A source is never its own copy.** A destination that is the source file
  itself (a destination folder that links back into DIR) never counts as
  already sorted, and a move never deletes a source whose destination is the
  same file.
- **Dry run.** `dry_run=True` computes the same destinations (numbered names
  included; on a file system that ignores letter case, `IMG.JPG` and `img.jpg`
  are planned as one name, as the real run will find them) but creates,
  copies, moves and deletes nothing and writes no log; the rows (status
  `dry-run`) say what would happen.

Only the standard library and `blurnet.atomic` are used here (no TensorFlow, no OpenCV).
"""
from __future__ import annotations

import csv
import datetime as _dt
import errno
import functools
import hashlib
import io
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from blurnet.atomic import fsync_path, shortened

LOG_FIELDS = ("source", "destination", "label", "action", "status", "message")
CHUNK = 1 << 20
_PART = ".blurnet-part-"


def _checkpoint(stage: str, path: Path) -> None:
    """Called at each step of a transfer ("copying" after every chunk, "copied" once the
    temporary file is complete and synced, "published" once the final name exists and is
    verified, just before a source is deleted). Does nothing; tests replace it to interrupt
    a transfer at a chosen point."""


def _remove_source(path: str) -> None:
    """Delete a source whose copy has been verified (the last step of a move)."""
    os.unlink(path)


# --------------------------------------------------------------------------- paths


def _same_file(a, b) -> bool:
    """`a` and `b` are one file (the same device and inode: a hard link, or a path through a symbolic link)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _abs(path) -> str:
    return os.path.abspath(os.fspath(path))


def ignores_case(folder) -> bool:
    """Whether the file system holding `folder` (or its nearest existing parent) treats names that differ only in
    letter case as one (macOS and Windows by default, FAT, exFAT): the nearest existing folder with a cased letter
    in its name is looked up with its case swapped. False when no such folder exists to look at."""
    path = Path(_abs(folder))
    for candidate in (path, *path.parents):
        if candidate.name.swapcase() != candidate.name and os.path.isdir(candidate):
            return _same_file(candidate, candidate.with_name(candidate.name.swapcase()))
    return False


def inside_of(folder) -> Callable[[str], bool]:
    """A test of whether a path is `folder` or lies below it (symbolic links resolved). Where the names differ but
    the folder is the same (a case-insensitive or Unicode-normalising file system: `Photos/sorted` and
    `photos/sorted` on macOS or exFAT), the path's folders are compared with `folder` by identity (device,
    inode). `folder` is resolved and looked up once, and each parent folder's identity once for all the paths
    below it."""
    folder = os.path.realpath(os.fspath(folder))
    try:
        wanted = os.stat(folder)
    except OSError:
        wanted = None
    below: dict[str, bool] = {}  # parent folder -> whether it is, or lies below, `folder` by identity

    def by_identity(parent: str) -> bool:
        if parent not in below:
            try:
                found = os.stat(parent)
                same = (found.st_dev, found.st_ino) == (wanted.st_dev, wanted.st_ino)
            except OSError:
                same = False
            grand = os.path.dirname(parent)
            below[parent] = same or (grand != parent and by_identity(grand))
        return below[parent]

    def inside(path) -> bool:
        path = os.path.realpath(os.fspath(path))
        try:
            if os.path.commonpath([path, folder]) == folder:
                return True
        except ValueError:  # different drives
            return False
        return wanted is not None and by_identity(os.path.dirname(path))

    return inside


def split_inside(pairs: Iterable[tuple[str, str | None]], out) -> tuple[list[str], list[str]]:
    """Split `(path, error)` pairs (`blurnet.inputs.expand_paths`) into the paths to classify
    and the files already under `out` (left out, so that OUT inside DIR is never re-sorted).
    Pairs with an error are kept (they become error records)."""
    keep, inside, under_out = [], [], inside_of(out)
    for path, error in pairs:
        (inside if error is None and under_out(path) else keep).append(path)
    return keep, inside


def relative_destination(path, roots: Iterable) -> str:
    """`path` relative to the deepest folder of `roots` that contains it; else its file name."""
    best = None
    absolute = _abs(path)
    for root in roots:
        root = _abs(root)
        try:
            common = os.path.commonpath([absolute, root])
        except ValueError:
            continue
        if common == root and absolute != root and (best is None or len(root) > len(best)):
            best = root
    if best is None:
        return os.path.basename(absolute)
    return os.path.relpath(absolute, best)


def _candidates(target: Path):
    yield target
    n = 1
    while True:
        yield target.with_name(f"{target.stem}-{n}{target.suffix}")
        n += 1


# --------------------------------------------------------------------------- files


def sha256_file(path) -> tuple[int, str]:
    """(size in bytes, SHA-256 hex digest) of a file's contents."""
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def _link_no_replace(tmp: Path, final: Path) -> bool:
    """Give `tmp` the name `final` unless that name exists; True on success. `tmp` is gone on success."""
    try:
        os.link(tmp, final)
    except FileExistsError:
        return False
    except OSError as error:
        no_links = error.errno in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK, errno.ENOSYS)
        if not (no_links or getattr(error, "winerror", None) in _WINDOWS_NO_LINKS):
            raise
        return _rename_no_replace(tmp, final)  # no hard links on this file system
    os.unlink(tmp)
    return True


_WINDOWS_NO_LINKS = (1, 50)  # ERROR_INVALID_FUNCTION, ERROR_NOT_SUPPORTED: what Windows says for a hard link on FAT
_RENAME_NOREPLACE = 1  # linux/fs.h
_AT_FDCWD = -100


def _rename_no_replace(tmp: Path, final: Path) -> bool:
    """Rename `tmp` to `final` unless that name exists; True on success.

    On Windows a rename never replaces a file. On Linux `renameat2(RENAME_NOREPLACE)` checks and renames in one
    step (FAT, exFAT, ext4, btrfs, tmpfs and most others support it); on macOS `renamex_np(RENAME_EXCL)`. Where
    neither is available (an old C library, a file system that refuses the flag) the name is checked first and
    then renamed, which another program writing that name at the same instant could lose its file to.
    """
    if os.name == "nt":
        try:
            os.rename(tmp, final)
        except FileExistsError:
            return False
        return True
    call = _exclusive_rename()
    if call is not None:
        result = call(os.fsencode(tmp), os.fsencode(final))
        if result == 0:
            return True
        code = _errno()
        if code == errno.EEXIST:
            return False
        # refused by the file system, or the call blocked (EPERM in some containers): a real permission problem
        # makes the plain rename below fail as well
        if code not in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM):
            raise OSError(code, os.strerror(code), str(final))
    if os.path.lexists(final):
        return False
    os.rename(tmp, final)
    return True


def _errno() -> int:
    """The C library's errno after a call made through `_exclusive_rename`."""
    import ctypes

    return ctypes.get_errno()


@functools.cache
def _exclusive_rename():
    """`f(src, dst) -> 0 or -1` (errno set) renaming without replacing, from the C library; None where it has none
    (or where Python was built without ctypes)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
    except (ImportError, OSError):
        return None
    if hasattr(libc, "renameat2"):
        renameat2 = libc.renameat2
        renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
        return lambda src, dst: renameat2(_AT_FDCWD, src, _AT_FDCWD, dst, _RENAME_NOREPLACE)
    if hasattr(libc, "renamex_np"):
        renamex_np = libc.renamex_np
        renamex_np.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_uint]
        return lambda src, dst: renamex_np(src, dst, 0x4)  # RENAME_EXCL
    return None


def _temporary(folder: Path, name: str) -> Path:
    return folder / f".{shortened(name)}{_PART}{uuid.uuid4().hex[:8]}"


def _write_new_file(target: Path, data: bytes) -> Path:
    """Write `data` to the first free numbered name of `target`, atomically; returns the name."""
    _make_folders(target.parent)
    tmp = _temporary(target.parent, target.name)
    try:
        with open(tmp, "xb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        for final in _candidates(target):
            if _link_no_replace(tmp, final):
                fsync_path(target.parent)
                return final
    finally:
        if tmp.exists():
            tmp.unlink()
    raise AssertionError("unreachable")


def _copy_to_temporary(source: str, folder: Path, name: str) -> tuple[Path, int, str, os.stat_result]:
    """Copy `source` to a synced hidden temporary file in `folder`; (tmp, size, sha256 of what was read, the
    source's status before it was read)."""
    stat = os.stat(source)
    tmp = _temporary(folder, name)
    digest, size = hashlib.sha256(), 0
    try:
        with open(source, "rb") as src, open(tmp, "xb") as dst:
            while chunk := src.read(CHUNK):
                digest.update(chunk)
                dst.write(chunk)
                size += len(chunk)
                _checkpoint("copying", tmp)
            dst.flush()
            os.fsync(dst.fileno())
        try:
            os.utime(tmp, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        except OSError:
            pass
        _checkpoint("copied", tmp)
    except BaseException:  # a Ctrl-C too: no hidden temporary file stays behind
        if tmp.exists():
            tmp.unlink()
        raise
    return tmp, size, digest.hexdigest(), stat


def _make_folders(folder: Path) -> None:
    """`folder` and any missing folder above it, each new one's entry synced into its parent: a copy under it that
    a move then relies on stays reachable after a power cut."""
    missing = []
    while not folder.exists() and folder.parent != folder:
        missing.append(folder)
        folder = folder.parent
    for new in reversed(missing):  # the outermost first
        new.mkdir(exist_ok=True)
        fsync_path(new.parent)


def _changed(path: str, before: os.stat_result) -> bool:
    """Whether the file at `path` is no longer the one whose status was `before` (replaced, rewritten or gone)."""
    try:
        now = os.stat(path)
    except OSError:
        return True
    return (now.st_dev, now.st_ino, now.st_size, now.st_mtime_ns) != (before.st_dev, before.st_ino, before.st_size,
                                                                      before.st_mtime_ns)


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


# --------------------------------------------------------------------------- sorting


@dataclass
class SortResult:
    """What `sort_records` did: one row per record (the CSV log's columns) and the log's path."""

    rows: list[dict] = field(default_factory=list)
    log: Path | None = None
    dry_run: bool = False

    def with_status(self, *statuses: str) -> list[dict]:
        """The log rows whose status is one of `statuses`."""
        return [r for r in self.rows if r["status"] in statuses]

    @property
    def failed(self) -> list[dict]:
        """Rows whose copy or move did not complete (`failed`, `move-failed`)."""
        return self.with_status("failed", "move-failed")

    @property
    def unreadable(self) -> list[dict]:
        """Rows of inputs that could not be classified (their record had an `error`); left where they are."""
        return self.with_status("unreadable")

    def lines(self) -> list[str]:
        """Human-readable report: the plan (dry run), problems, and a summary line."""
        out = []
        if self.dry_run:
            for r in self.with_status("dry-run"):
                note = f" ({r['message']})" if r["message"] else ""
                out.append(f"would {r['action']} {r['source']} -> {r['destination']}{note}")
        for r in self.unreadable:
            out.append(f"left in place (unreadable): {r['source']}: {r['message']}")
        for r in self.failed:
            out.append(f"{r['status']}: {r['source']}: {r['message']}")
        for r in self.with_status("interrupted"):
            out.append(f"interrupted: {r['message']}")
        done = len(self.with_status("ok"))
        summary = (f"dry run: {len(self.with_status('dry-run'))} would be sorted, nothing written" if self.dry_run
                   else f"sorted {done}")
        summary += f", {len(self.unreadable)} unreadable, {len(self.failed)} failed, {len(self.with_status('skipped'))} skipped"
        if self.log is not None:
            summary += f"; log: {self.log}"
        out.append(summary)
        return out


class SortInterrupted(KeyboardInterrupt):
    """A Ctrl-C during `sort_records`: `.sort_result` holds the rows done so far, and `.log` the log written of them
    (None when the Ctrl-C came while the log was written)."""

    def __init__(self, result: SortResult):
        done = sum(row["action"] != "stop" for row in result.rows)
        super().__init__(f"sorting interrupted after {done} records")
        self.sort_result = result


def _row(source, destination, label, action, status, message="") -> dict:
    return {"source": _abs(source), "destination": _abs(destination) if destination else "", "label": label or "",
            "action": action, "status": status, "message": message}


class _Sorter:
    def __init__(self, out: Path, move: bool, dry_run: bool):
        self.out, self.move, self.dry_run = out, move, dry_run
        self.action = "move" if move else "copy"
        self.reserved: dict[str, str] = {}  # destinations planned in a dry run (`_key`) -> the source planned there
        # names planned in a dry run are compared as the file system will compare them
        casefold = dry_run and ignores_case(out)
        self._key = (lambda path: _abs(path).casefold()) if casefold else _abs

    def _same(self, candidate: Path, source: str, source_id: list) -> bool:
        """`candidate` is another file with the contents of `source` (size first, then SHA-256); in a dry run, a
        destination planned for a source with those contents counts as that file."""
        contents = self.reserved.get(self._key(candidate), candidate) if not os.path.lexists(candidate) else candidate
        try:
            # a symbolic link is no copy: the file it points to may go (another folder, a removed card)
            if os.path.islink(contents) or not os.path.isfile(contents) or _same_file(contents, source):
                return False
            if os.stat(contents).st_size != os.stat(source).st_size:
                return False
            if not source_id:
                source_id.append(sha256_file(source))
            return sha256_file(contents) == source_id[0]
        except OSError:
            return False

    def _free(self, candidate: Path) -> bool:
        """No file has the name `candidate`, and no destination planned in this dry run."""
        return not os.path.lexists(candidate) and self._key(candidate) not in self.reserved

    def _existing_identical(self, target: Path, source: str) -> Path | None:
        """The first taken numbered name of `target` that holds `source`'s contents, if any."""
        source_id: list = []
        for candidate in _candidates(target):
            if self._free(candidate):
                return None
            if self._same(candidate, source, source_id):
                return candidate

    def _plan(self, target: Path, source: str) -> Path:
        for candidate in _candidates(target):
            if self._free(candidate):
                self.reserved[self._key(candidate)] = source
                return candidate

    def transfer(self, source: str, label: str, relative: str) -> dict:
        """Copy or move `source` to `OUT/<label>/<relative>` (or the first free numbered name) by the rules above;
        returns its log row."""
        target = self.out / label / relative
        if not os.path.isfile(source):
            return _row(source, "", label, self.action, "failed", "not a file (moved or deleted since it was classified?)")
        identical = self._existing_identical(target, source)
        if self.dry_run:
            if identical is not None:
                note = "identical file already there" + ("; source would be deleted" if self.move else "")
                return _row(source, identical, label, self.action, "dry-run", note)
            return _row(source, self._plan(target, source), label, self.action, "dry-run")
        if identical is not None:
            return self._finish(source, identical, label, "identical file already there")
        try:
            _make_folders(target.parent)
            tmp, size, digest, before = _copy_to_temporary(source, target.parent, target.name)
        except OSError as error:
            return _row(source, "", label, self.action, "failed", f"copy failed, source kept ({_describe(error)})")
        try:
            final = next(c for c in _candidates(target) if _link_no_replace(tmp, c))
            fsync_path(target.parent)
        except OSError as error:
            return _row(source, "", label, self.action, "failed", f"copy failed, source kept ({_describe(error)})")
        finally:
            if tmp.exists():
                tmp.unlink()
        return self._finish(source, final, label, "", (size, digest, before), created=True)

    def _finish(self, source: str, final: Path, label: str, note: str, copied=None, created=False) -> dict:
        """Verify `final` against the source; for a move, then delete the source, unless it changed since it was
        read (an editor saving it meanwhile: its newer version must not go)."""
        try:
            before = copied[2] if copied is not None else os.stat(source)
            written = sha256_file(final)
            current = os.stat(source).st_size
            expected = copied[:2] if copied is not None else sha256_file(source)
        except OSError as error:
            return _row(source, final, label, self.action, "failed", f"verification failed, source kept ({_describe(error)})")
        if written != expected or written[0] != current:
            if created:
                final.unlink()
            return _row(
                source, "" if created else final, label, self.action, "failed",
                f"copy does not match the source (size {written[0]} vs {current}, SHA-256 checked); source kept",
            )
        _checkpoint("published", final)
        if self.move and _same_file(final, source):
            return _row(source, final, label, self.action, "move-failed", "the destination is the source file itself; kept")
        if self.move and _changed(source, before):
            return _row(source, final, label, self.action, "move-failed",
                        "the source changed while it was copied; both kept (sort it again to move the newer version)")
        if self.move:
            try:
                _remove_source(source)
            except OSError as error:
                return _row(source, final, label, self.action, "move-failed",
                            f"copied, but the source could not be deleted ({_describe(error)}); both kept")
        return _row(source, final, label, self.action, "ok", note)


def sort_records(records: Iterable[dict], out, *, roots: Iterable = (), move: bool = False, dry_run: bool = False,
                 progress: Callable[[int], None] | None = None, now: _dt.datetime | None = None) -> SortResult:
    """Copy (or move) each classified photograph into `out/<label>/`; see the module docstring.

    `records`: `blurnet.predict` records (`path` and `label`, or `path` and `error`).
    `roots`: the folder arguments the paths were found under (relative paths are kept below
    them). `progress(1)` is called after each record. Returns a `SortResult`; the CSV log is
    written to `out` unless `dry_run`. Raises `OSError` only when `out` itself cannot be
    created, the log cannot be written or the file system fails outside a copy; every per-file
    problem is a row. A run stopped early writes its log first (module docstring): a Ctrl-C
    raises `SortInterrupted`; it and any other error carry the result as `.sort_result`.
    """
    out = Path(out)
    roots = [os.fspath(r) for r in roots]
    if not dry_run:
        _make_folders(out)
    sorter, under_out = _Sorter(out, move, dry_run), inside_of(out)
    result = SortResult(dry_run=dry_run)
    stamp = (now or _dt.datetime.now()).strftime("%Y%m%d-%H%M%S")
    try:
        for record in records:
            path = os.fspath(record["path"])
            label = record.get("label")
            if "error" in record or not label:
                row = _row(path, "", "", "keep", "unreadable", record.get("error") or "no label")
            elif os.sep in label or (os.altsep and os.altsep in label) or label in (".", ".."):
                row = _row(path, "", label, "keep", "failed", f"label {label!r} is not a folder name")
            elif under_out(path):
                row = _row(path, "", label, "skip", "skipped", "already under the sort folder")
            else:
                row = sorter.transfer(path, label, relative_destination(path, roots))
            result.rows.append(row)
            if progress is not None:
                progress(1)
    except BaseException as error:
        if dry_run:
            raise
        result.rows.append({**dict.fromkeys(LOG_FIELDS, ""), "action": "stop", "status": "interrupted",
                            "message": f"sorting stopped here ({_describe(error)}); later records were not sorted"})
        try:
            result.log = _write_log(out, stamp, result.rows)
        except (OSError, KeyboardInterrupt):
            pass  # the interruption is what the caller hears about; without a log, the rows are in `.sort_result`
        if isinstance(error, KeyboardInterrupt) and not isinstance(error, SortInterrupted):
            raise SortInterrupted(result) from error
        error.sort_result = result  # what was sorted before it, for the caller to report
        raise
    if not dry_run:
        try:
            result.log = _write_log(out, stamp, result.rows)
        except OSError as error:  # every file is sorted; what went where is handed back with the error
            error.sort_result = result
            raise
        except KeyboardInterrupt as error:  # a Ctrl-C while the log is written: the rows are handed back unlogged
            raise SortInterrupted(result) from error
    return result


def _write_log(out: Path, stamp: str, rows: list[dict]) -> Path:
    return _write_new_file(out / f"blurnet-sort-{stamp}.csv", format_log(rows).encode("utf-8", "surrogateescape"))


def format_log(rows: list[dict]) -> str:
    """Rows as CSV text with the header `LOG_FIELDS`."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=LOG_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()
