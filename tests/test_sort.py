"""`--sort-into`: copying and moving classified photographs by label (`blurnet.sort`), no model needed."""
import csv
import datetime
import hashlib
import io
import logging
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

import blurnet.sort as sort
from blurnet.sort import LOG_FIELDS, relative_destination, sort_records, split_inside

ROOT = Path(__file__).resolve().parents[1]
NOW = datetime.datetime(2024, 5, 6, 7, 8, 9)
LOG_NAME = "blurnet-sort-20240506-070809.csv"


def photo_bytes(seed: int, size: int = 3000) -> bytes:
    """Distinct, deterministic file contents (not a real image: sorting never decodes)."""
    return hashlib.sha256(str(seed).encode()).digest() * (size // 32) + bytes([seed % 256]) * (size % 32)


def make(path: Path, seed: int, size: int = 3000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(photo_bytes(seed, size))
    return path


def rec(path, label):
    return {"path": str(path), "label": label, "probabilities": {}, "scale": 1.0, "tiles": 1}


def read_log(path):
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames) == LOG_FIELDS
        return list(reader)


def tree(folder: Path) -> dict:
    """{relative path: bytes} of every file below `folder` (hidden files included)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------- paths


def test_relative_destination_and_split_inside(tmp_path):
    d = tmp_path / "photos"
    assert relative_destination(d / "sub" / "a.jpg", [d]) == os.path.join("sub", "a.jpg")
    assert relative_destination(d / "a.jpg", [d]) == "a.jpg"
    # the deepest containing root wins; a file outside every root keeps its name
    assert relative_destination(d / "sub" / "x" / "a.jpg", [d, d / "sub"]) == os.path.join("x", "a.jpg")
    assert relative_destination(tmp_path / "else" / "b.png", [d]) == "b.png"
    assert relative_destination(d / "c.png", []) == "c.png"

    out = d / "sorted"
    pairs = [(str(d / "a.jpg"), None), (str(out / "sharp" / "a.jpg"), None), (str(d / "gone.jpg"), "no such file or folder")]
    keep, inside = split_inside(pairs, out)
    assert keep == [str(d / "a.jpg"), str(d / "gone.jpg")]
    assert inside == [str(out / "sharp" / "a.jpg")]


# ---------------------------------------------------------------- copying, clashes, log


def test_copy_keeps_relative_paths_and_writes_the_log(tmp_path):
    src = tmp_path / "card"
    a = make(src / "a.jpg", 1)
    b = make(src / "day1" / "b.jpg", 2)
    c = make(src / "day1" / "deep" / "c.JPG", 3)
    single = make(tmp_path / "loose" / "d.png", 4)
    out = tmp_path / "sorted"
    result = sort_records([rec(a, "sharp"), rec(b, "motion"), rec(c, "motion"), rec(single, "defocus")], out, roots=[src], now=NOW)

    assert tree(out / "sharp") == {"a.jpg": photo_bytes(1)}
    assert tree(out / "motion") == {os.path.join("day1", "b.jpg"): photo_bytes(2), os.path.join("day1", "deep", "c.JPG"): photo_bytes(3)}
    assert tree(out / "defocus") == {"d.png": photo_bytes(4)}
    assert all(p.exists() for p in (a, b, c, single))  # copies: sources stay
    assert os.stat(out / "sharp" / "a.jpg").st_mtime_ns == os.stat(a).st_mtime_ns  # modification time kept
    assert sorted(os.listdir(out)) == [LOG_NAME, "defocus", "motion", "sharp"]  # no temporaries left

    assert result.log == out / LOG_NAME
    rows = read_log(result.log)
    assert rows == [
        {"source": str(a), "destination": str(out / "sharp" / "a.jpg"), "label": "sharp", "action": "copy", "status": "ok", "message": ""},
        {"source": str(b), "destination": str(out / "motion" / "day1" / "b.jpg"), "label": "motion", "action": "copy", "status": "ok", "message": ""},
        {"source": str(c), "destination": str(out / "motion" / "day1" / "deep" / "c.JPG"), "label": "motion", "action": "copy", "status": "ok", "message": ""},
        {"source": str(single), "destination": str(out / "defocus" / "d.png"), "label": "defocus", "action": "copy", "status": "ok", "message": ""},
    ]
    assert result.lines() == [f"sorted 4, 0 unreadable, 0 failed, 0 skipped; log: {out / LOG_NAME}"]

    # a second run at the same second gets its own log; identical files are not copied twice
    again = sort_records([rec(a, "sharp")], out, roots=[src], now=NOW)
    assert again.log == out / "blurnet-sort-20240506-070809-1.csv"
    assert read_log(again.log)[0]["message"] == "identical file already there"
    assert sorted(os.listdir(out / "sharp")) == ["a.jpg"]
    assert read_log(result.log) == rows  # the first log is untouched


def test_name_clashes_get_numbered_names_and_nothing_is_overwritten(tmp_path):
    one = make(tmp_path / "cam1" / "IMG_0001.jpg", 1)
    two = make(tmp_path / "cam2" / "IMG_0001.jpg", 2)
    three = make(tmp_path / "cam3" / "IMG_0001.jpg", 3)
    out = tmp_path / "out"
    existing = make(out / "gaussian" / "IMG_0001.jpg", 99)  # a different photograph already there
    taken = make(out / "gaussian" / "IMG_0001-2.jpg", 98)

    # file arguments (no roots): all three keep only their name and clash
    result = sort_records([rec(one, "gaussian"), rec(two, "gaussian"), rec(three, "gaussian")], out, now=NOW)
    assert [r["status"] for r in result.rows] == ["ok", "ok", "ok"]
    assert [os.path.basename(r["destination"]) for r in result.rows] == ["IMG_0001-1.jpg", "IMG_0001-3.jpg", "IMG_0001-4.jpg"]
    assert tree(out / "gaussian") == {
        "IMG_0001.jpg": photo_bytes(99),
        "IMG_0001-1.jpg": photo_bytes(1),
        "IMG_0001-2.jpg": photo_bytes(98),
        "IMG_0001-3.jpg": photo_bytes(2),
        "IMG_0001-4.jpg": photo_bytes(3),
    }
    assert existing.read_bytes() == photo_bytes(99) and taken.read_bytes() == photo_bytes(98)


def _no_hard_links(monkeypatch):
    import errno

    def refuse(src, dst, *args, **kwargs):
        raise OSError(errno.EPERM, "Operation not permitted", str(dst))

    monkeypatch.setattr(sort.os, "link", refuse)


@pytest.mark.skipif(sys.platform != "linux", reason="renameat2 is Linux's")
def test_without_hard_links_a_name_taken_at_the_last_instant_is_not_replaced(tmp_path, monkeypatch):
    # FAT and exFAT (a camera's card) have no hard links. Another program writes the destination name just after
    # it was seen free: the rename must fail rather than replace that file.
    probe = make(tmp_path / "probe", 0)
    if sort._exclusive_rename()(os.fsencode(probe), os.fsencode(tmp_path / "probed")) != 0:
        pytest.skip("the file system of the temporary folder refuses renameat2's RENAME_NOREPLACE (NFS)")
    _no_hard_links(monkeypatch)
    ours, final = make(tmp_path / ".part", 1), make(tmp_path / "IMG_0001.jpg", 2)

    def no_check(path):
        raise AssertionError("the name was checked before the rename: another program could write it in between")

    monkeypatch.setattr(sort.os.path, "lexists", no_check)
    assert sort._link_no_replace(ours, final) is False
    monkeypatch.undo()
    assert final.read_bytes() == photo_bytes(2) and ours.read_bytes() == photo_bytes(1)
    _no_hard_links(monkeypatch)
    assert sort._link_no_replace(ours, tmp_path / "IMG_0001-1.jpg") is True and not ours.exists()
    assert (tmp_path / "IMG_0001-1.jpg").read_bytes() == photo_bytes(1)
    # The same sort on such a file system: numbered names, nothing overwritten
    sources = [make(tmp_path / f"cam{k}" / "IMG_0002.jpg", 10 + k) for k in range(3)]
    result = sort_records([rec(p, "motion") for p in sources], tmp_path / "out", now=NOW)
    assert [os.path.basename(r["destination"]) for r in result.rows] == ["IMG_0002.jpg", "IMG_0002-1.jpg", "IMG_0002-2.jpg"]
    assert tree(tmp_path / "out" / "motion") == {"IMG_0002.jpg": photo_bytes(10), "IMG_0002-1.jpg": photo_bytes(11),
                                                 "IMG_0002-2.jpg": photo_bytes(12)}


def test_windows_file_systems_without_hard_links_fall_back_to_a_rename(tmp_path, monkeypatch):
    def refuse(src, dst, *args, **kwargs):  # what Windows raises for a hard link on FAT or exFAT
        error = OSError(22, "Incorrect function", str(dst))
        error.winerror = 1
        raise error

    monkeypatch.setattr(sort.os, "link", refuse)
    ours = make(tmp_path / ".part", 1)
    assert sort._link_no_replace(ours, tmp_path / "IMG_0001.jpg") is True and not ours.exists()
    assert (tmp_path / "IMG_0001.jpg").read_bytes() == photo_bytes(1)
    other = make(tmp_path / ".other", 2)
    assert sort._link_no_replace(other, tmp_path / "IMG_0001.jpg") is False and other.exists()


@pytest.mark.parametrize("exclusive", ["none", "refused by the file system", "blocked by a container"])
def test_without_an_exclusive_rename_the_name_is_checked_first(tmp_path, monkeypatch, exclusive):
    import ctypes
    import errno

    def refused(src, dst):
        ctypes.set_errno(errno.EPERM if exclusive == "blocked by a container" else errno.EINVAL)
        return -1

    _no_hard_links(monkeypatch)
    monkeypatch.setattr(sort, "_exclusive_rename", lambda: None if exclusive == "none" else refused)
    ours, final = make(tmp_path / ".part", 1), make(tmp_path / "IMG_0001.jpg", 2)
    assert sort._link_no_replace(ours, final) is False and final.read_bytes() == photo_bytes(2) and ours.exists()
    assert sort._link_no_replace(ours, tmp_path / "free.jpg") is True and not ours.exists()
    assert (tmp_path / "free.jpg").read_bytes() == photo_bytes(1)


# ---------------------------------------------------------------- moves


def test_move_deletes_the_source_only_after_a_verified_copy(tmp_path, monkeypatch):
    src = tmp_path / "in"
    good = make(src / "good.jpg", 1, size=3 * 1024 * 1024 + 17)  # several chunks
    bad = make(src / "bad.jpg", 2)
    out = tmp_path / "out"
    hashed = []
    real_sha = sort.sha256_file
    monkeypatch.setattr(sort, "sha256_file", lambda p: hashed.append(Path(p).name) or real_sha(p))

    def corrupt(stage, path):  # the write path damages one copy after it was synced
        if stage == "copied" and ".bad.jpg" in path.name:
            data = bytearray(path.read_bytes())
            data[100] ^= 0xFF
            path.write_bytes(bytes(data))

    monkeypatch.setattr(sort, "_checkpoint", corrupt)
    result = sort_records([rec(good, "sharp"), rec(bad, "sharp")], out, roots=[src], move=True, now=NOW)

    assert not good.exists() and (out / "sharp" / "good.jpg").read_bytes() == photo_bytes(1, 3 * 1024 * 1024 + 17)
    assert "good.jpg" in hashed  # the copy was read back and hashed before the source was deleted
    assert bad.read_bytes() == photo_bytes(2)  # source kept
    assert sorted(os.listdir(out / "sharp")) == ["good.jpg"]  # the damaged copy is removed, no temporary left
    assert [(r["action"], r["status"]) for r in result.rows] == [("move", "ok"), ("move", "failed")]
    assert result.rows[1]["message"] == "copy does not match the source (size 3000 vs 3000, SHA-256 checked); source kept"
    assert result.rows[1]["destination"] == ""
    assert result.failed == [result.rows[1]]
    assert f"failed: {bad}: copy does not match" in "\n".join(result.lines())


def test_move_whose_source_cannot_be_deleted_keeps_both_and_goes_on(tmp_path, monkeypatch):
    a, b, c = (make(tmp_path / "in" / f"{n}.jpg", i) for i, n in enumerate("abc"))
    out = tmp_path / "out"
    real_remove = sort._remove_source

    def remove(path):
        if path.endswith("b.jpg"):
            raise PermissionError(13, "Permission denied", path)
        real_remove(path)

    monkeypatch.setattr(sort, "_remove_source", remove)
    result = sort_records([rec(a, "motion"), rec(b, "motion"), rec(c, "motion")], out, roots=[tmp_path / "in"], move=True, now=NOW)
    assert [r["status"] for r in result.rows] == ["ok", "move-failed", "ok"]
    assert not a.exists() and not c.exists()
    assert b.read_bytes() == photo_bytes(1) and (out / "motion" / "b.jpg").read_bytes() == photo_bytes(1)
    assert result.rows[1]["message"] == f"copied, but the source could not be deleted (PermissionError: [Errno 13] Permission denied: '{b}'); both kept"
    assert read_log(result.log)[1]["status"] == "move-failed"


def _make_read_only(folder: Path):
    """Make `folder` undeletable-from for the current user; returns an undo function, or a skip reason."""
    if os.geteuid() != 0:
        for p in folder.iterdir():
            p.chmod(0o444)
        folder.chmod(0o555)
        return lambda: folder.chmod(0o755)
    # root ignores permission bits; the immutable attribute stops root too (needs CAP_LINUX_IMMUTABLE)
    done = subprocess.run(["chattr", "+i", str(folder)], capture_output=True, text=True) if _has("chattr") else None
    if done is None or done.returncode != 0:
        return "running as root, where permission bits do not stop deletion, and chattr +i is unavailable: " + (done.stderr.strip() if done else "no chattr")
    return lambda: subprocess.run(["chattr", "-i", str(folder)], check=True)


def _has(program):
    return any(os.access(os.path.join(d, program), os.X_OK) for d in os.environ.get("PATH", "").split(os.pathsep))


def test_read_only_sources_copy_fine_and_move_fails_cleanly(tmp_path):
    src = tmp_path / "ro"
    a, b = make(src / "a.jpg", 1), make(src / "b.jpg", 2)
    other = make(tmp_path / "rw" / "c.jpg", 3)
    undo = _make_read_only(src)
    if isinstance(undo, str):
        pytest.skip(undo)
    try:
        copied = sort_records([rec(a, "sharp"), rec(b, "defocus")], tmp_path / "copies", roots=[src], now=NOW)
        assert [r["status"] for r in copied.rows] == ["ok", "ok"]
        assert (tmp_path / "copies" / "sharp" / "a.jpg").read_bytes() == photo_bytes(1)

        moved = sort_records([rec(a, "sharp"), rec(other, "sharp"), rec(b, "defocus")], tmp_path / "moved", roots=[src, tmp_path / "rw"], move=True, now=NOW)
        assert [r["status"] for r in moved.rows] == ["move-failed", "ok", "move-failed"]
        assert all("could not be deleted" in moved.rows[i]["message"] and moved.rows[i]["message"].endswith("both kept") for i in (0, 2))
        assert a.read_bytes() == photo_bytes(1) and b.read_bytes() == photo_bytes(2)  # sources stay
        assert (tmp_path / "moved" / "sharp" / "a.jpg").read_bytes() == photo_bytes(1)  # copies stay
        assert (tmp_path / "moved" / "defocus" / "b.jpg").read_bytes() == photo_bytes(2)
        assert not other.exists() and (tmp_path / "moved" / "sharp" / "c.jpg").read_bytes() == photo_bytes(3)
    finally:
        undo()


KILL_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    import blurnet.sort as sort
    stage_to_kill, nth = sys.argv[1], int(sys.argv[2])
    seen = []
    sort.CHUNK = 1000  # several chunks per file
    def checkpoint(stage, path):
        if stage == stage_to_kill:
            seen.append(path)
            if len(seen) == nth:
                os.kill(os.getpid(), signal.SIGKILL)
    sort._checkpoint = checkpoint
    src, out = sys.argv[3], sys.argv[4]
    records = [{"path": os.path.join(src, n), "label": "motion"} for n in sorted(os.listdir(src))]
    sort.sort_records(records, out, roots=[src], move=True)
    """
)


@pytest.mark.parametrize("stage,nth", [("copying", 5), ("copied", 2), ("published", 2)])
def test_a_kill_in_the_middle_of_a_move_loses_no_photograph(tmp_path, stage, nth):
    src, out = tmp_path / "card", tmp_path / "sorted"
    originals = {f"IMG_{i}.jpg": photo_bytes(i, 3500) for i in range(3)}  # 4 chunks each
    for name, data in originals.items():
        (src / name).parent.mkdir(exist_ok=True)
        (src / name).write_bytes(data)

    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, "-c", KILL_SCRIPT, stage, str(nth), str(src), str(out)], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == -signal.SIGKILL, done.stderr

    visible = {p.name: p.read_bytes() for p in (out / "motion").iterdir() if not p.name.startswith(".")}
    hidden = [p.name for p in (out / "motion").iterdir() if p.name.startswith(".")]
    # every visible file under a final name is a complete photograph
    assert all(data in originals.values() for data in visible.values())
    for name, data in originals.items():
        assert (src / name).exists() and (src / name).read_bytes() == data or visible.get(name) == data, name
    if stage == "copying":  # killed inside the second file: its partial copy exists only under a hidden name
        assert sorted(visible) == ["IMG_0.jpg"] and len(hidden) == 1 and hidden[0].startswith(".IMG_1.jpg.blurnet-part-")
        assert (out / "motion" / hidden[0]).stat().st_size < 3500  # incomplete (buffered writes may not have reached it)
        assert sorted(os.listdir(src)) == ["IMG_1.jpg", "IMG_2.jpg"]
    elif stage == "copied":  # complete but not yet published
        assert sorted(visible) == ["IMG_0.jpg"] and len(hidden) == 1
        assert (out / "motion" / hidden[0]).read_bytes() == originals["IMG_1.jpg"]
    else:  # published and verified, source not yet deleted: the photograph exists twice
        assert sorted(visible) == ["IMG_0.jpg", "IMG_1.jpg"] and hidden == []
        assert sorted(os.listdir(src)) == ["IMG_1.jpg", "IMG_2.jpg"]
    assert not list(out.glob("blurnet-sort-*.csv"))  # the log is written at the end only

    # running the same move again completes it without duplicates
    records = [rec(src / n, "motion") for n in sorted(os.listdir(src))]
    result = sort_records(records, out, roots=[src], move=True, now=NOW)
    assert all(r["status"] == "ok" for r in result.rows)
    assert os.listdir(src) == []
    final = {p.name: p.read_bytes() for p in (out / "motion").iterdir() if not p.name.startswith(".")}
    assert final == originals
    if stage == "published":
        assert result.rows[0]["message"] == "identical file already there"


# ---------------------------------------------------------------- unreadable, dry run, OUT inside DIR


def test_unreadable_files_stay_and_are_listed(tmp_path):
    src = tmp_path / "in"
    ok = make(src / "ok.jpg", 1)
    broken = make(src / "broken.jpg", 2, size=10)
    missing = src / "missing.jpg"
    records = [rec(ok, "sharp"), {"path": str(broken), "error": "cannot decode this file as an image"}, {"path": str(missing), "error": "no such file or folder"}]
    out = tmp_path / "out"
    result = sort_records(records, out, roots=[src], move=True, now=NOW)
    assert broken.read_bytes() == photo_bytes(2, size=10) and not ok.exists()
    assert sorted(os.listdir(out)) == [LOG_NAME, "sharp"]
    assert [r["source"] for r in result.unreadable] == [str(broken), str(missing)]
    assert result.lines() == [
        f"left in place (unreadable): {broken}: cannot decode this file as an image",
        f"left in place (unreadable): {missing}: no such file or folder",
        f"sorted 1, 2 unreadable, 0 failed, 0 skipped; log: {out / LOG_NAME}",
    ]
    rows = read_log(result.log)
    assert rows[1] == {"source": str(broken), "destination": "", "label": "", "action": "keep", "status": "unreadable", "message": "cannot decode this file as an image"}
    assert rows[2]["status"] == "unreadable" and rows[2]["message"] == "no such file or folder"


def test_dry_run_changes_nothing(tmp_path):
    src = tmp_path / "in"
    a = make(src / "x" / "a.jpg", 1)
    b = make(src / "b.jpg", 2)
    c = make(tmp_path / "elsewhere" / "b.jpg", 3)
    before = tree(tmp_path)
    out = tmp_path / "out"
    records = [rec(a, "motion"), rec(b, "sharp"), rec(c, "sharp"), {"path": str(src / "bad.jpg"), "error": "empty file"}]
    result = sort_records(records, out, roots=[src], move=True, dry_run=True, now=NOW)
    assert tree(tmp_path) == before and not out.exists()  # no folder, no copy, no log
    assert result.log is None
    assert [(r["action"], r["status"], r["destination"]) for r in result.rows] == [
        ("move", "dry-run", str(out / "motion" / "x" / "a.jpg")),
        ("move", "dry-run", str(out / "sharp" / "b.jpg")),
        ("move", "dry-run", str(out / "sharp" / "b-1.jpg")),  # the clash is planned too
        ("keep", "unreadable", ""),
    ]
    assert result.lines() == [
        f"would move {a} -> {out / 'motion' / 'x' / 'a.jpg'}",
        f"would move {b} -> {out / 'sharp' / 'b.jpg'}",
        f"would move {c} -> {out / 'sharp' / 'b-1.jpg'}",
        f"left in place (unreadable): {src / 'bad.jpg'}: empty file",
        "dry run: 3 would be sorted, nothing written, 1 unreadable, 0 failed, 0 skipped",
    ]


def test_dry_run_plans_identical_photographs_as_the_real_run_sorts_them(tmp_path):
    src = tmp_path / "in"
    a, b = make(src / "a" / "x.jpg", 1), make(src / "b" / "x.jpg", 1)  # the same photograph twice
    c = make(src / "c" / "x.jpg", 2)
    records = [rec(a, "sharp"), rec(b, "sharp"), rec(c, "sharp")]
    plan = sort_records(records, tmp_path / "out", move=True, dry_run=True, now=NOW)
    done = sort_records(records, tmp_path / "out", move=True, now=NOW)
    expected = [str(tmp_path / "out" / "sharp" / name) for name in ("x.jpg", "x.jpg", "x-1.jpg")]
    assert [r["destination"] for r in plan.rows] == [r["destination"] for r in done.rows] == expected
    assert [r["message"] for r in plan.rows][1] == "identical file already there; source would be deleted"
    assert [r["status"] for r in done.rows] == ["ok"] * 3
    assert tree(tmp_path / "out" / "sharp") == {"x.jpg": photo_bytes(1), "x-1.jpg": photo_bytes(2)}


def test_a_dry_run_on_a_file_system_that_ignores_case_plans_names_as_it_will_find_them(tmp_path, monkeypatch):
    src = tmp_path / "in"
    upper, lower, other = make(src / "IMG.JPG", 1), make(src / "img.jpg", 2), make(src / "Img-1.jpg", 3)
    records = [rec(upper, "sharp"), rec(lower, "sharp"), rec(other, "sharp")]
    out = tmp_path / "out" / "sharp"
    sensitive = sort_records(records, tmp_path / "out", roots=[src], dry_run=True, now=NOW)
    assert [r["destination"] for r in sensitive.rows] == [str(out / "IMG.JPG"), str(out / "img.jpg"), str(out / "Img-1.jpg")]
    monkeypatch.setattr(sort, "ignores_case", lambda folder: True)
    folded = sort_records(records, tmp_path / "out", roots=[src], dry_run=True, now=NOW)
    # img.jpg takes IMG.JPG's name: numbered; Img-1.jpg then meets img-1.jpg: numbered again
    assert [r["destination"] for r in folded.rows] == [str(out / "IMG.JPG"), str(out / "img-1.jpg"), str(out / "Img-1-1.jpg")]
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(not hasattr(os, "symlink") or sys.platform == "win32", reason="needs symbolic links")
def test_ignores_case_looks_up_the_nearest_folder_with_its_case_swapped(tmp_path):
    (tmp_path / "Cards" / "Card").mkdir(parents=True)
    assert not sort.ignores_case(tmp_path / "Cards" / "Card" / "not yet" / "sorted")
    # a folder reached under its swapped name, as a case-insensitive file system answers
    (tmp_path / "Cards" / "cARD").symlink_to(tmp_path / "Cards" / "Card")
    assert sort.ignores_case(tmp_path / "Cards" / "Card" / "not yet" / "sorted")
    assert sort.ignores_case(tmp_path / "Cards" / "Card")
    assert not sort.ignores_case(tmp_path / "Cards")
    (tmp_path / "Cards" / "123").mkdir()  # no cased letter: the folder above decides
    assert not sort.ignores_case(tmp_path / "Cards" / "123")


@pytest.mark.skipif(not hasattr(os, "symlink") or sys.platform == "win32", reason="needs symbolic links")
def test_a_destination_that_links_back_to_the_source_never_costs_the_photograph(tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    photo = make(src / "x.jpg", 1)
    out.mkdir()
    os.symlink(src, out / "sharp")  # OUT/sharp is DIR itself: OUT/sharp/x.jpg is the source
    result = sort_records([rec(photo, "sharp")], out, move=True, now=NOW)
    assert [r["status"] for r in result.rows] == ["ok"]
    assert result.rows[0]["destination"] == str(out / "sharp" / "x-1.jpg")  # a real copy, not the source itself
    assert tree(src) == {"x-1.jpg": photo_bytes(1)}  # moved to its numbered name, never deleted
    # A hard link to the source under the destination name is the same file: the move keeps it.
    linked = make(tmp_path / "in2" / "y.jpg", 2)
    (tmp_path / "out2" / "sharp").mkdir(parents=True)
    os.link(linked, tmp_path / "out2" / "sharp" / "y.jpg")
    sorter = sort._Sorter(tmp_path / "out2", move=True, dry_run=False)
    row = sorter._finish(str(linked), tmp_path / "out2" / "sharp" / "y.jpg", "sharp", "")
    assert row["status"] == "move-failed" and linked.read_bytes() == photo_bytes(2)


@pytest.mark.skipif(sys.platform in ("win32", "darwin"), reason="file names are bytes on Linux only")
def test_a_file_name_that_is_not_utf8_is_sorted_and_logged_with_its_own_bytes(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    raw = os.fsencode(str(src)) + b"/caf\xe9.jpg"  # Latin-1, not UTF-8
    with open(raw, "wb") as handle:
        handle.write(photo_bytes(1))
    result = sort_records([rec(os.fsdecode(raw), "sharp")], tmp_path / "out", roots=[src], move=True, now=NOW)
    assert [r["status"] for r in result.rows] == ["ok"]
    assert os.listdir(os.fsencode(str(tmp_path / "out" / "sharp"))) == [b"caf\xe9.jpg"] and os.listdir(src) == []
    log = (tmp_path / "out" / LOG_NAME).read_bytes()
    assert log.count(b"caf\xe9.jpg") == 2  # source and destination, the name's own bytes


def test_files_already_under_out_are_skipped(tmp_path):
    src = tmp_path / "photos"
    out = src / "sorted"
    new = make(src / "new.jpg", 1)
    old = make(out / "sharp" / "old.jpg", 2)
    result = sort_records([rec(new, "sharp"), rec(old, "motion")], out, roots=[src], move=True, now=NOW)
    assert [(r["action"], r["status"]) for r in result.rows] == [("move", "ok"), ("skip", "skipped")]
    assert old.read_bytes() == photo_bytes(2) and not (out / "motion").exists()
    assert sorted(os.listdir(out / "sharp")) == ["new.jpg", "old.jpg"]  # not sorted.../sharp/sorted/sharp/old.jpg


# ---------------------------------------------------------------- command line


def fake_predict(monkeypatch):
    """Replace the model by a rule on file names: the label is the name's prefix before '_'."""
    import blurnet.prediction as predict_module
    from blurnet.inputs import expand_paths

    calls = []

    def run(paths, model, scale, map_path=None, mask_path=None, progress=None, full=False):
        calls.append(list(paths))
        records = []
        for path, error in expand_paths(paths):
            name = os.path.basename(path)
            if error or name.startswith("broken"):
                records.append({"path": path, "error": error or "cannot decode this file as an image"})
            else:
                records.append({"path": path, "label": name.split("_")[0], "probabilities": {"sharp": 1.0, "gaussian": 0.0, "motion": 0.0, "defocus": 0.0}, "scale": 1.0, "tiles": 1})
            if progress:
                progress(1)
        return records

    monkeypatch.setattr(predict_module, "load_model", lambda model=None: object())
    monkeypatch.setattr(predict_module, "predict", run)
    return calls


def test_cli_sort_into_a_folder_inside_the_input(tmp_path, monkeypatch):
    from blurnet.cli import main

    calls = fake_predict(monkeypatch)
    src = tmp_path / "card"
    make(src / "sharp_1.jpg", 1)
    make(src / "trip" / "motion_2.jpg", 2)
    make(src / "broken_3.jpg", 3)
    out = src / "sorted"
    runner = CliRunner()

    dry = runner.invoke(main, ["predict", str(src), "--sort-into", str(out), "--move", "--dry-run", "--format", "csv"])
    assert dry.exit_code == 1  # the unreadable file counts as a failed input
    assert f"would move {src / 'sharp_1.jpg'} -> {out / 'sharp' / 'sharp_1.jpg'}" in dry.stderr
    assert f"left in place (unreadable): {src / 'broken_3.jpg'}: cannot decode this file as an image" in dry.stderr
    assert not out.exists()

    result = runner.invoke(main, ["predict", str(src), "--sort-into", str(out), "--move", "--format", "csv"])
    assert result.exit_code == 1, result.output
    assert result.stdout.splitlines()[0] == "path,label,sharp,gaussian,motion,defocus,scale,tiles,area_sharp,area_gaussian,area_motion,area_defocus,error"
    assert (out / "sharp" / "sharp_1.jpg").read_bytes() == photo_bytes(1)
    assert (out / "motion" / "trip" / "motion_2.jpg").read_bytes() == photo_bytes(2)
    assert sorted(p.name for p in src.iterdir()) == ["broken_3.jpg", "sorted", "trip"]
    [log] = out.glob("blurnet-sort-*.csv")
    assert [(Path(r["source"]).name, r["action"], r["status"]) for r in read_log(log)] == [
        ("broken_3.jpg", "keep", "unreadable"), ("sharp_1.jpg", "move", "ok"), ("motion_2.jpg", "move", "ok")]
    assert "sorted 2, 1 unreadable, 0 failed, 0 skipped" in result.stderr
    assert "1 of 3 inputs failed" in result.stderr

    # a second run over the same folder leaves the sorted files alone (they are not even classified)
    time.sleep(1.1)  # a new log name
    again = runner.invoke(main, ["predict", str(src), "--sort-into", str(out), "--move"])
    assert "left out 2 files already under" in again.stderr
    assert calls[-1] == [str(src / "broken_3.jpg")]
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.jpg")) == [os.path.join("motion", "trip", "motion_2.jpg"), os.path.join("sharp", "sharp_1.jpg")]

    bad = runner.invoke(main, ["predict", str(src), "--move"])
    assert bad.exit_code == 2 and "--move and --dry-run need --sort-into" in bad.output


def _interrupt_at(monkeypatch, stage, nth):
    """Make the `nth` `stage` checkpoint of the run raise KeyboardInterrupt, as a Ctrl-C there would."""
    seen = []

    def checkpoint(at, path):
        if at == stage:
            seen.append(path)
            if len(seen) == nth:
                raise KeyboardInterrupt

    monkeypatch.setattr(sort, "_checkpoint", checkpoint)


def test_an_interrupted_move_writes_the_log_of_what_was_done(tmp_path, monkeypatch):
    src, out = tmp_path / "card", tmp_path / "sorted"
    photos = [make(src / f"IMG_{i}.jpg", i) for i in range(3)]
    _interrupt_at(monkeypatch, "published", 2)  # the second copy is verified, its source not yet deleted
    with pytest.raises(sort.SortInterrupted) as stopped:
        sort_records([rec(p, "motion") for p in photos], out, roots=[src], move=True, now=NOW)
    result = stopped.value.sort_result
    assert result.log == out / LOG_NAME and str(stopped.value) == "sorting interrupted after 1 records"
    assert [(Path(r["source"]).name if r["source"] else "", r["action"], r["status"]) for r in read_log(result.log)] == [
        ("IMG_0.jpg", "move", "ok"), ("", "stop", "interrupted")]
    assert "KeyboardInterrupt" in read_log(result.log)[1]["message"]
    assert not photos[0].exists() and (out / "motion" / "IMG_0.jpg").read_bytes() == photo_bytes(0)
    assert photos[1].read_bytes() == photo_bytes(1) and (out / "motion" / "IMG_1.jpg").read_bytes() == photo_bytes(1)
    assert photos[2].read_bytes() == photo_bytes(2) and not (out / "motion" / "IMG_2.jpg").exists()
    assert result.lines()[-2:] == [f"interrupted: {result.rows[-1]['message']}",
                                   f"sorted 1, 0 unreadable, 0 failed, 0 skipped; log: {out / LOG_NAME}"]


def test_a_ctrl_c_while_the_log_is_written_still_hands_back_what_went_where(tmp_path, monkeypatch):
    src, out = tmp_path / "card", tmp_path / "sorted"
    photos = [make(src / f"IMG_{i}.jpg", i) for i in range(3)]

    def interrupted(path, data):
        raise KeyboardInterrupt

    monkeypatch.setattr(sort, "_write_new_file", interrupted)
    with pytest.raises(sort.SortInterrupted) as stopped:
        sort_records([rec(p, "motion") for p in photos], out, roots=[src], move=True, now=NOW)
    result = stopped.value.sort_result
    assert str(stopped.value) == "sorting interrupted after 3 records"
    assert result.log is None and [(Path(r["destination"]).name, r["status"]) for r in result.rows] == [
        ("IMG_0.jpg", "ok"), ("IMG_1.jpg", "ok"), ("IMG_2.jpg", "ok")]
    assert sorted(p.name for p in (out / "motion").iterdir()) == ["IMG_0.jpg", "IMG_1.jpg", "IMG_2.jpg"]


def test_a_sort_stopped_by_a_disk_error_writes_its_log_and_hands_back_what_was_done(tmp_path, monkeypatch):
    src, out = tmp_path / "card", tmp_path / "sorted"
    photos = [make(src / f"IMG_{i}.jpg", i) for i in range(3)]
    transfer, calls = sort._Sorter.transfer, []

    def failing(self, source, label, relative):
        calls.append(source)
        if len(calls) == 2:
            raise OSError(5, "Input/output error")  # the disk, not one photograph
        return transfer(self, source, label, relative)

    monkeypatch.setattr(sort._Sorter, "transfer", failing)
    with pytest.raises(OSError, match="Input/output error") as stopped:
        sort_records([rec(p, "motion") for p in photos], out, roots=[src], move=True, now=NOW)
    result = stopped.value.sort_result
    assert [(r["action"], r["status"]) for r in read_log(out / LOG_NAME)] == [("move", "ok"), ("stop", "interrupted")]
    assert result.log == out / LOG_NAME and "OSError: [Errno 5] Input/output error" in result.rows[-1]["message"]
    assert not photos[0].exists() and photos[1].exists() and photos[2].exists()


def test_cli_reports_an_interrupted_sort_and_where_its_log_is(tmp_path, monkeypatch):
    from blurnet.cli import main

    fake_predict(monkeypatch)
    src, out = tmp_path / "card", tmp_path / "sorted"
    for i in range(3):
        make(src / f"sharp_{i}.jpg", i)
    _interrupt_at(monkeypatch, "copied", 2)
    done = CliRunner().invoke(main, ["predict", str(src), "--sort-into", str(out), "--format", "csv"])
    assert done.exit_code == 1 and isinstance(done.exception, SystemExit), done.output
    [log] = out.glob("blurnet-sort-*.csv")
    assert [r["status"] for r in read_log(log)] == ["ok", "interrupted"]
    assert f"sorted 1, 0 unreadable, 0 failed, 0 skipped; log: {log}" in done.stderr and "Error: interrupted" in done.stderr
    assert sorted(p.name for p in src.iterdir()) == ["sharp_0.jpg", "sharp_1.jpg", "sharp_2.jpg"]  # a copy: all kept
    assert [p.name for p in (out / "sharp").iterdir()] == ["sharp_0.jpg"]  # the second's temporary copy removed


def test_cli_refuses_outputs_it_could_not_write_before_classifying(tmp_path, monkeypatch):
    from blurnet.cli import main

    calls = fake_predict(monkeypatch)
    src = tmp_path / "card"
    make(src / "sharp_1.jpg", 1)
    blocker = make(tmp_path / "notes.txt", 2)  # a file where a folder is needed
    runner = CliRunner()
    for flags, message in (
            (["--output", str(blocker / "results.csv")], f"cannot write the file {str(blocker / 'results.csv')!r}: {str(blocker)!r} is not a folder"),
            (["--sort-into", str(blocker / "sorted"), "--move"], f"cannot write the folder {str(blocker / 'sorted')!r}: {str(blocker)!r} is not a folder"),
            (["--map", str(blocker / "map.png")], f"cannot write the file {str(blocker / 'map.png')!r}: {str(blocker)!r} is not a folder"),
            (["--mask", str(blocker / "m" / "mask.png")], f"cannot write the file {str(blocker / 'm' / 'mask.png')!r}: {str(blocker)!r} is not a folder")):
        done = runner.invoke(main, ["predict", str(src), *flags])
        assert done.exit_code == 2 and message in done.output, (flags, done.output)
    assert calls == []  # refused before any photograph was classified
    assert (src / "sharp_1.jpg").read_bytes() == photo_bytes(1) and blocker.read_bytes() == photo_bytes(2)
    dry = runner.invoke(main, ["predict", str(src), "--sort-into", str(blocker / "sorted"), "--dry-run", "--format", "csv"])
    assert dry.exit_code == 0 and len(calls) == 1, dry.output  # a dry run writes nothing, so it is not refused


def test_a_file_name_of_250_bytes_is_moved_through_a_short_temporary_name(tmp_path):
    src, out = tmp_path / "card", tmp_path / "sorted"
    photo = make(src / ("p" * 246 + ".jpg"), 3)  # legal (255 bytes at most); its name plus a temporary tag is not
    result = sort_records([rec(photo, "motion")], out, roots=[src], move=True, now=NOW)
    assert [r["status"] for r in result.rows] == ["ok"] and not photo.exists()
    assert (out / "motion" / photo.name).read_bytes() == photo_bytes(3)
    assert [p.name for p in (out / "motion").iterdir()] == [photo.name]


def test_a_pattern_without_a_folder_names_no_root(tmp_path, monkeypatch):
    from blurnet.inputs import folder_arguments

    make(tmp_path / "a.jpg", 1)
    make(tmp_path / "sub" / "dir" / "x.jpg", 2)
    monkeypatch.chdir(tmp_path)
    assert folder_arguments(["*.jpg", "sub/dir/x.jpg"]) == []  # so x.jpg keeps its name, as a file argument does
    assert folder_arguments(["sub/*/x.jpg", "sub", "nothing/*"]) == ["sub", "sub"]


def test_cli_keeps_the_path_below_folders_a_pattern_names(tmp_path, monkeypatch):
    from blurnet.cli import main

    fake_predict(monkeypatch)
    shoots, out = tmp_path / "shoots", tmp_path / "sorted"
    make(shoots / "day1" / "sharp_1.jpg", 1)
    make(shoots / "day2" / "sharp_1.jpg", 2)
    done = CliRunner().invoke(main, ["predict", str(shoots / "day*"), "--sort-into", str(out), "--format", "csv"])
    assert done.exit_code == 0, done.output
    assert (out / "sharp" / "day1" / "sharp_1.jpg").read_bytes() == photo_bytes(1)
    assert (out / "sharp" / "day2" / "sharp_1.jpg").read_bytes() == photo_bytes(2)


def test_cli_quiet_shows_no_progress_but_a_dry_runs_plan(tmp_path, monkeypatch):
    from blurnet.cli import main

    fake_predict(monkeypatch)
    src, out = tmp_path / "card", tmp_path / "sorted"
    make(src / "sharp_1.jpg", 1)
    loud = CliRunner().invoke(main, ["predict", str(src), "--sort-into", str(out), "--format", "csv"])
    assert "device: " in loud.stderr and "sorted 1, 0 unreadable" in loud.stderr, loud.output
    done = CliRunner().invoke(main, ["-q", "predict", str(src), "--sort-into", str(out), "--format", "csv"])
    assert done.exit_code == 0 and done.stderr == "" and done.stdout.startswith("path,label"), done.output
    plan = CliRunner().invoke(main, ["-q", "predict", str(src), "--sort-into", str(tmp_path / "again"), "--dry-run", "--format", "csv"])
    assert plan.exit_code == 0 and "sharp_1.jpg" in plan.stderr and not (tmp_path / "again").exists(), plan.output


def test_cli_results_that_cannot_be_written_go_to_standard_output(tmp_path, monkeypatch):
    import blurnet.prediction
    from blurnet.cli import main

    fake_predict(monkeypatch)
    src = tmp_path / "card"
    make(src / "motion_1.jpg", 1)

    def disk_full(path, text):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(blurnet.prediction, "write_text_atomic", disk_full)
    done = CliRunner().invoke(main, ["predict", str(src), "--format", "csv", "--output", str(tmp_path / "r.csv")])
    assert done.exit_code == 1 and "No space left on device" in done.stderr and "printed above" in done.stderr
    assert done.stdout.splitlines()[1].startswith(f"{src / 'motion_1.jpg'},motion,")  # the result is not lost
    assert not (tmp_path / "r.csv").exists()


def test_cli_with_every_input_missing_still_writes_a_record_each(tmp_path):
    from blurnet.cli import main

    out = tmp_path / "r.json"
    done = CliRunner().invoke(main, ["predict", str(tmp_path / "a.jpg"), str(tmp_path / "b.png"), "--format", "json",
                                     "--output", str(out)])
    assert done.exit_code == 1 and "2 of 2 inputs failed" in done.stderr, done.output
    records = json.loads(out.read_text())
    assert [(r["path"], "error" in r) for r in records] == [(str(tmp_path / "a.jpg"), True), (str(tmp_path / "b.png"), True)]
    done = CliRunner().invoke(main, ["predict", str(tmp_path / "a.jpg"), "--format", "csv"])
    assert done.exit_code == 1 and done.stdout.splitlines()[1].startswith(f"{tmp_path / 'a.jpg'},,")


def test_progress_bar_only_on_a_terminal():
    from blurnet.cli import _progress_bar

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    term = Terminal()
    with _progress_bar(3, "classifying", file=term) as update:
        for _ in range(3):
            time.sleep(0.05)
            update(1)
    text = term.getvalue()
    assert "classifying" in text and "3/3" in text
    assert " photos/s, 0:00:00 left" in text

    plain = io.StringIO()
    with _progress_bar(3, "classifying", file=plain) as update:
        assert update is None
    assert plain.getvalue() == ""
    blurnet_logger = logging.getLogger("blurnet")
    level = blurnet_logger.level
    blurnet_logger.setLevel(logging.WARNING)  # what -q sets: no progress, even on a terminal
    try:
        quiet_term = Terminal()
        with _progress_bar(3, "classifying", file=quiet_term) as update:
            assert update is None
        assert quiet_term.getvalue() == ""
    finally:
        blurnet_logger.setLevel(level)


def test_a_move_keeps_a_source_that_changed_while_it_was_copied(tmp_path, monkeypatch):
    source = make(tmp_path / "in" / "a.jpg", 1)

    def edited(stage, path):  # an editor saves a new version, same size, while the copy is made
        if stage == "copied":
            source.write_bytes(photo_bytes(2))

    monkeypatch.setattr(sort, "_checkpoint", edited)
    row = sort_records([rec(source, "motion")], tmp_path / "out", move=True, now=NOW).rows[0]
    assert row["status"] == "move-failed" and "changed while it was copied" in row["message"]
    assert source.read_bytes() == photo_bytes(2)  # the newer version stays
    assert (tmp_path / "out" / "motion" / "a.jpg").read_bytes() == photo_bytes(1)


def test_a_symbolic_link_in_out_is_not_taken_for_a_sorted_copy(tmp_path):
    source = make(tmp_path / "in" / "a.jpg", 1)
    elsewhere = make(tmp_path / "card" / "dup.jpg", 1)  # the same bytes, on a card that will be removed
    (tmp_path / "out" / "motion").mkdir(parents=True)
    os.symlink(elsewhere, tmp_path / "out" / "motion" / "a.jpg")
    row = sort_records([rec(source, "motion")], tmp_path / "out", move=True, now=NOW).rows[0]
    assert row["status"] == "ok" and os.path.basename(row["destination"]) == "a-1.jpg"
    copy = tmp_path / "out" / "motion" / "a-1.jpg"
    assert not copy.is_symlink() and copy.read_bytes() == photo_bytes(1) and not source.exists()


def test_a_log_that_cannot_be_written_hands_back_what_went_where(tmp_path, monkeypatch):
    sources = [make(tmp_path / "in" / f"{k}.jpg", k) for k in range(2)]

    def disk_full(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(sort, "_write_log", disk_full)
    with pytest.raises(OSError, match="No space left") as caught:
        sort_records([rec(p, "sharp") for p in sources], tmp_path / "out", move=True, now=NOW)
    done = caught.value.sort_result
    assert [r["status"] for r in done.rows] == ["ok", "ok"] and done.log is None
    assert not any(p.exists() for p in sources) and len(list((tmp_path / "out" / "sharp").iterdir())) == 2
    # The command line prints the log it could not write
    from blurnet.cli import main

    fake_predict(monkeypatch)
    more = [make(tmp_path / "in2" / f"sharp_{k}.jpg", 10 + k) for k in range(2)]
    done = CliRunner().invoke(main, ["predict", *map(str, more), "--sort-into", str(tmp_path / "out2"), "--move",
                                     "--format", "csv"])
    assert done.exit_code == 1 and "the sort log could not be written; what went where:" in done.output, done.output
    assert "source,destination,label,action,status,message" in done.output and f"{more[0]}" in done.output


def test_out_inside_dir_is_found_when_the_file_system_ignores_letter_case(tmp_path, monkeypatch):
    # macOS and exFAT: `Photos/sorted` and `photos/sorted` are one folder, and realpath keeps the spelling given
    (tmp_path / "photos" / "sorted" / "motion").mkdir(parents=True)
    real_stat = os.stat

    def case_blind(path, *args, **kwargs):
        return real_stat(os.fspath(path).replace("Photos", "photos"), *args, **kwargs)

    monkeypatch.setattr(sort.os, "stat", case_blind)
    inside = str(tmp_path / "Photos" / "sorted" / "motion" / "a.jpg")
    assert sort.inside_of(tmp_path / "photos" / "sorted")(inside)
    assert not sort.inside_of(tmp_path / "photos" / "sorted")(str(tmp_path / "Photos" / "a.jpg"))


def test_many_paths_cost_one_look_at_each_folder(tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    paths = [str(make(tmp_path / "in" / "day" / f"{k}.jpg", k)) for k in range(50)]
    looked = []
    real_stat = os.stat
    monkeypatch.setattr(sort.os, "stat", lambda path, *a, **k: looked.append(os.fspath(path)) or real_stat(path, *a, **k))
    keep, inside = sort.split_inside([(p, None) for p in paths] + [(str(out / "x.jpg"), None)], out)
    assert keep == paths and inside == [str(out / "x.jpg")]
    assert len(looked) == len(set(looked)) <= len(Path(paths[0]).parents) + 1  # OUT, then each folder above once


def test_every_folder_a_copy_needs_is_synced_into_its_parent_before_the_source_goes(tmp_path, monkeypatch):
    source = make(tmp_path / "card" / "trip" / "a.jpg", 1)
    synced, removed = [], []
    real_remove = sort._remove_source
    monkeypatch.setattr(sort, "fsync_path", lambda path: synced.append(Path(path)))
    monkeypatch.setattr(sort, "_remove_source", lambda path: removed.append(list(synced)) or real_remove(path))
    out = tmp_path / "new" / "out"
    row = sort_records([rec(source, "motion")], out, roots=[tmp_path / "card"], move=True, now=NOW).rows[0]
    assert row["status"] == "ok" and not source.exists()
    # new/, out/, motion/ and trip/ were made: each one's entry synced in its parent, outermost first, then the
    # copy's folder once the copy has its name, all before the source was deleted
    assert removed == [[tmp_path, tmp_path / "new", out, out / "motion", out / "motion" / "trip"]]
