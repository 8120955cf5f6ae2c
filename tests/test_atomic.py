import os

import pytest

import blurnet.atomic
from blurnet.atomic import atomic_directory, atomic_file


def test_atomic_file_replaces_only_on_success(tmp_path):
    target = tmp_path / "sub" / "a.txt"
    with atomic_file(target) as tmp:
        assert tmp.suffix == ".txt" and tmp.parent == target.parent
        tmp.write_text("one")
    assert target.read_text() == "one"
    with pytest.raises(RuntimeError):
        with atomic_file(target) as tmp:
            tmp.write_text("two")
            raise RuntimeError("interrupted")
    assert target.read_text() == "one"
    assert [p.name for p in target.parent.iterdir()] == ["a.txt"]


def test_atomic_directory_keeps_the_old_folder_until_the_new_one_is_complete(tmp_path):
    target = tmp_path / "model"
    with atomic_directory(target, "f") as tmp:
        (tmp / "f").write_text("v1")
    with pytest.raises(KeyboardInterrupt):
        with atomic_directory(target, "f") as tmp:
            (tmp / "f").write_text("v2")
            assert (target / "f").read_text() == "v1"
            raise KeyboardInterrupt
    assert (target / "f").read_text() == "v1"
    with atomic_directory(target, "f") as tmp:
        (tmp / "f").write_text("v3")
        (tmp / "g").write_text("v3")
    assert sorted(p.name for p in target.iterdir()) == ["f", "g"]
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_atomic_directory_replaces_only_an_earlier_folder_of_its_kind(tmp_path):
    shared = tmp_path / "saved_models"
    (shared / "base").mkdir(parents=True)
    (shared / "base" / "blurnet.json").write_text("{}")
    (shared / "notes.txt").write_text("mine")
    before = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    for target in (shared, tmp_path / "saved_models" / "notes.txt"):  # a folder of several exports; a file
        with pytest.raises(ValueError, match=f"{target.name}.*(no blurnet.json|not a folder)"):
            with atomic_directory(target, "blurnet.json") as tmp:
                (tmp / "blurnet.json").write_text("{}")
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == before  # nothing made or lost
    (tmp_path / "empty").mkdir()
    with atomic_directory(tmp_path / "empty", "blurnet.json") as tmp:  # an empty folder is replaced
        (tmp / "blurnet.json").write_text("{}")
    with atomic_directory(shared / "base", "blurnet.json") as tmp:  # an earlier export is replaced
        (tmp / "blurnet.json").write_text("new")
    assert (shared / "base" / "blurnet.json").read_text() == "new" and (shared / "notes.txt").read_text() == "mine"


def test_atomic_file_syncs_the_file_before_the_rename_and_the_folder_after(tmp_path, monkeypatch):
    events = []
    opened = {}
    real_open, real_replace = os.open, os.replace

    def open_(path, flags, *args):
        fd = real_open(path, flags, *args)
        opened[fd] = os.fspath(path)
        return fd

    monkeypatch.setattr(blurnet.atomic.os, "open", open_)
    monkeypatch.setattr(blurnet.atomic.os, "fsync", lambda fd: events.append(("fsync", opened[fd])))
    monkeypatch.setattr(blurnet.atomic.os, "replace", lambda a, b: events.append(("replace", os.fspath(b))) or real_replace(a, b))
    target = tmp_path / "results.csv"
    with atomic_file(target) as tmp:
        tmp.write_text("a,b\n")
    assert target.read_text() == "a,b\n"
    assert [kind for kind, _ in events] == ["fsync", "replace", "fsync"]
    assert events[0][1] == os.fspath(tmp) and events[1][1] == os.fspath(target) and events[2][1] == os.fspath(tmp_path)


def test_a_link_is_written_through_and_a_long_name_gets_a_short_temporary_name(tmp_path):
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "results.csv").write_text("old")
    (tmp_path / "results.csv").symlink_to(tmp_path / "shared" / "results.csv")
    with atomic_file(tmp_path / "results.csv") as tmp:
        assert tmp.parent == tmp_path / "shared"
        tmp.write_text("new")
    assert (tmp_path / "results.csv").is_symlink() and (tmp_path / "shared" / "results.csv").read_text() == "new"

    long = tmp_path / ("é" * 120 + ".csv")  # 244 bytes: legal, but not with a temporary name's 20 more
    with atomic_file(long) as tmp:
        assert len(tmp.name.encode()) <= 255
        tmp.write_text("x")
    assert long.read_text() == "x" and sorted(p.name for p in tmp_path.iterdir()) == sorted([long.name, "results.csv", "shared"])
    dotted = tmp_path / ("r." + "x" * 200 + ".csv")  # its suffixes alone are 205 bytes
    with atomic_file(dotted) as tmp:
        assert len(tmp.name.encode()) <= 255 and tmp.name.endswith(".csv")
        tmp.write_text("y")
    assert dotted.read_text() == "y"


def test_an_output_folder_under_a_file_is_refused_before_any_work(tmp_path):
    from blurnet.atomic import check_replaceable

    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match=r"cannot write the folder .*'.*notes.txt' is not a folder"):
        check_replaceable(tmp_path / "notes.txt" / "report", "metrics.json")
    check_replaceable(tmp_path / "new" / "report", "metrics.json")  # missing folders on the way are made later


def test_check_writable_names_what_stands_in_the_way(tmp_path):
    from blurnet.atomic import check_writable

    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    check_writable(tmp_path / "new" / "deeper" / "r.csv")  # folders on the way are made later
    check_writable(tmp_path / "sorted", folder=True)
    for target, folder, message in ((tmp_path / "file.txt" / "r.csv", False, "'.*file.txt' is not a folder"),
                                    (tmp_path / "file.txt", True, "it exists and is a file"),
                                    (tmp_path, False, "it exists and is a folder"),
                                    (tmp_path / "dangling", True, "it is a link to nothing")):
        with pytest.raises(ValueError, match=f"cannot write the {'folder' if folder else 'file'} .*: {message}"):
            check_writable(target, folder)


def test_atomic_directory_never_deletes_the_earlier_folder_it_could_not_put_back(tmp_path, monkeypatch):
    target = tmp_path / "report"
    with atomic_directory(target, "f") as tmp:
        (tmp / "f").write_text("v1")
    real_replace = os.replace

    def failing(src, dst):  # the earlier folder moves aside; neither the new one nor it can then take the name
        if "old" not in os.path.basename(os.fspath(dst)):
            raise OSError(5, "Input/output error", os.fspath(dst))
        real_replace(src, dst)

    monkeypatch.setattr(blurnet.atomic.os, "replace", failing)
    with pytest.raises(OSError, match="Input/output error"):
        with atomic_directory(target, "f") as tmp:
            (tmp / "f").write_text("v2")
    monkeypatch.undo()
    kept = [p for p in tmp_path.iterdir() if p.name != "report"]
    assert not target.exists() and len(kept) == 1 and (kept[0] / "f").read_text() == "v1"  # set aside, not deleted


def test_folders_that_overlap_are_refused_by_name(tmp_path):
    from blurnet.atomic import check_apart

    (tmp_path / "a" / "b").mkdir(parents=True)
    os.symlink(tmp_path / "a", tmp_path / "link")
    for first, second in ((tmp_path / "a", tmp_path / "a"), (tmp_path / "a", tmp_path / "a" / "b" / "c"),
                          (tmp_path / "a" / "b", tmp_path / "a"), (tmp_path / "link" / "b", tmp_path / "a" / "b")):
        with pytest.raises(ValueError, match=rf"--out and the model would overlap \('{first}' and '{second}'\)"):
            check_apart(first, second, "--out and the model")
    check_apart(tmp_path / "a" / "b", tmp_path / "a" / "bc", "x")  # a shared prefix is no overlap
    check_apart(tmp_path / "a" / "b", tmp_path / "c", "x")


def test_a_file_that_arrives_while_the_folder_is_made_is_never_deleted(tmp_path):
    target = tmp_path / "report"
    target.mkdir()  # empty when the work starts: replaceable
    with pytest.raises(ValueError, match=r"report' was not replaced \(.*holds files but no metrics.json.*\); the new "
                                         r"output is in '.*report.new'"):
        with atomic_directory(target, "metrics.json") as tmp:
            (tmp / "metrics.json").write_text("{}")
            (target / "thesis.docx").write_text("a user's file, saved there meanwhile")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report", "report.new"]  # nothing swapped; the work kept
    assert (target / "thesis.docx").read_text() == "a user's file, saved there meanwhile"
    assert (tmp_path / "report.new" / "metrics.json").read_text() == "{}"


def test_a_file_of_the_earlier_folder_that_cannot_be_kept_keeps_both_folders(tmp_path):
    target = tmp_path / "model"
    with atomic_directory(target, "blurnet.json") as tmp:
        (tmp / "blurnet.json").write_text("old")
    os.mkfifo(target / "notes.pipe")  # no copy can be made of a named pipe
    with pytest.raises(ValueError, match=r"model' was not replaced \(.*notes.pipe.*\); the new output is in '.*model.new'"):
        with atomic_directory(target, "blurnet.json", keep_others_except=("blurnet.json",)) as tmp:
            (tmp / "blurnet.json").write_text("new")
    assert (target / "blurnet.json").read_text() == "old" and (target / "notes.pipe").exists()
    assert (tmp_path / "model.new" / "blurnet.json").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "model.new"]


def test_a_replaced_file_keeps_its_permissions(tmp_path):
    target = tmp_path / "results.csv"
    target.write_text("old")
    target.chmod(0o600)
    with atomic_file(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new" and (target.stat().st_mode & 0o777) == 0o600
