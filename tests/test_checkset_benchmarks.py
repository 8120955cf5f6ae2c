"""The benchmarks that read the check set of real photographs, run without it."""
import json

import pytest
from conftest import load_benchmark

from data_pipeline.sources import CHECKSET_VARIABLE, checkset_folder


def test_checkset_folder_follows_the_variable(monkeypatch, tmp_path):
    monkeypatch.delenv(CHECKSET_VARIABLE, raising=False)
    assert checkset_folder("whole") is None
    monkeypatch.setenv(CHECKSET_VARIABLE, str(tmp_path))
    assert checkset_folder("kernels") == str(tmp_path / "kernels")


@pytest.mark.parametrize("name, option", [("realdev", "--data"), ("blurmap", "--data"), ("recorded_shake", "--kernels")])
def test_without_the_check_set_a_benchmark_ends_with_a_skipped_json_line(monkeypatch, capsys, name, option):
    monkeypatch.delenv(CHECKSET_VARIABLE, raising=False)
    benchmark = load_benchmark(name)  # its default folder is read when the script loads
    assert benchmark.main([]) == {"skipped": f"no {option} and no {CHECKSET_VARIABLE}"}
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"skipped: pass {option} DIR, or set {CHECKSET_VARIABLE}")
    assert json.loads(lines[-1]) == {"skipped": f"no {option} and no {CHECKSET_VARIABLE}"}
