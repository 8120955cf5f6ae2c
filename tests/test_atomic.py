import pytest

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
    with atomic_directory(target) as tmp:
        (tmp / "f").write_text("v1")
    with pytest.raises(KeyboardInterrupt):
        with atomic_directory(target) as tmp:
            (tmp / "f").write_text("v2")
            assert (target / "f").read_text() == "v1"
            raise KeyboardInterrupt
    assert (target / "f").read_text() == "v1"
    with atomic_directory(target) as tmp:
        (tmp / "g").write_text("v3")
    assert sorted(p.name for p in target.iterdir()) == ["g"]
    assert [p.name for p in tmp_path.iterdir()] == ["model"]
