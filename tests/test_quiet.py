"""Quiet start-up (`blurnet.quiet`, `blurnet -v`) and answers given before TensorFlow loads."""
import json
import os
import re
import subprocess
import sys

import pytest
from click.testing import CliRunner

from blurnet import quiet
from blurnet.cli import main

DEVICE_LINE = re.compile(r"device: (GPU \(.+\), )?CPU \(\d+ cores?\)(, no GPU)?")


def _run(code_or_args, **env):
    args = ["-c", code_or_args] if isinstance(code_or_args, str) else code_or_args
    environment = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "GRPC_VERBOSITY")}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300, env={**environment, **env})


def test_device_line_format():
    assert quiet.format_device_line([], 2) == "device: CPU (2 cores), no GPU"
    assert quiet.format_device_line([], 1) == "device: CPU (1 core), no GPU"
    assert quiet.format_device_line(["NVIDIA H100"] * 2, 16) == "device: GPU (2 x NVIDIA H100), CPU (16 cores)"
    assert quiet.format_device_line(["A", "B"], 8) == "device: GPU (1 x A, 1 x B), CPU (8 cores)"


def test_configure_sets_the_log_levels_and_verbose_restores_them(monkeypatch):
    monkeypatch.setattr(quiet, "_verbose", quiet._verbose)  # restored after the test
    for name in ("TF_CPP_MIN_LOG_LEVEL", "GRPC_VERBOSITY"):
        monkeypatch.delenv(name, raising=False)
    quiet.configure(verbose=False)
    assert (os.environ["TF_CPP_MIN_LOG_LEVEL"], os.environ["GRPC_VERBOSITY"]) == ("3", "ERROR")
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "1")
    quiet.configure(verbose=False)
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "1"  # a level set by the user wins
    quiet.configure(verbose=True)
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0" and quiet.is_verbose()


def test_stderr_silenced_hides_descriptor_2_and_replays_it_on_failure(capfd, monkeypatch):
    monkeypatch.setattr(quiet, "_verbose", False)
    with quiet.stderr_silenced():
        os.write(2, b"start-up noise\n")
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "after\n"
    with pytest.raises(RuntimeError, match="import failed"):
        with quiet.stderr_silenced():
            os.write(2, b"the reason\n")
            raise RuntimeError("import failed")
    assert capfd.readouterr().err == "the reason\n"  # a failure keeps its diagnostics
    monkeypatch.setattr(quiet, "_verbose", True)
    with quiet.stderr_silenced():
        os.write(2, b"shown when verbose\n")
    assert capfd.readouterr().err == "shown when verbose\n"


@pytest.mark.slow
def test_tensorflow_starts_without_a_line_on_stderr():
    result = _run("from blurnet import quiet; quiet.configure(); quiet.import_tensorflow(); print(quiet.device_line())")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no absl, oneDNN, CUDA-driver or cuInit lines
    assert DEVICE_LINE.fullmatch(result.stdout.strip()), result.stdout


def test_predict_reports_a_missing_file_before_tensorflow_loads(tmp_path):
    missing = str(tmp_path / "no" / "such.jpg")
    code = ("import sys; from click.testing import CliRunner; from blurnet.cli import main; "
            "r = CliRunner().invoke(main, ['predict', sys.argv[1], '--format', 'json']); "
            "print(r.exit_code, 'tensorflow' in sys.modules, 'keras' in sys.modules); print(r.stdout, end=''); "
            "print(r.stderr, end='')")
    result = _run(["-c", code, missing])
    assert result.returncode == 0, result.stderr
    first, *rest = result.stdout.splitlines()
    assert first == "1 False False"  # exit status 1; neither TensorFlow nor Keras imported
    assert json.loads("\n".join(rest[:-1])) == [{"path": missing, "error": "no such file or folder"}]  # a record, as for any input
    assert rest[-1] == "1 of 1 inputs failed"

    result = _run(["-m", "blurnet.cli", "predict", missing, str(tmp_path / "*.gif")])
    assert result.returncode == 1
    rows = result.stdout.splitlines()[2:]  # below the table's header and rule
    assert [row.split() for row in rows] == [[missing, "ERROR:", "no", "such", "file", "or", "folder"],
                                             [str(tmp_path / "*.gif"), "ERROR:", "no", "file", "matches", "this", "pattern"]]
    assert result.stderr.splitlines() == ["2 of 2 inputs failed"]


def test_verbose_is_a_group_option():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0 and "-v, --verbose" in result.output


def test_a_file_name_that_is_not_utf8_is_printed_byte_for_byte(tmp_path):
    missing = os.fsdecode(os.fsencode(tmp_path) + b"/\xff-missing.jpg")  # a name from a camera or an old disk
    environment = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "GRPC_VERBOSITY")}
    result = subprocess.run([sys.executable, "-m", "blurnet.cli", "predict", missing, "--format", "csv"], capture_output=True,
                            timeout=300, env={**environment, "PYTHONIOENCODING": "utf-8"})  # strict, as on most desktops
    assert result.returncode == 1 and b"Traceback" not in result.stderr, result.stderr
    header, row = result.stdout.splitlines()
    assert header.startswith(b"path,") and row.startswith(os.fsencode(missing) + b",")  # the name's own bytes
    assert row.endswith(b",no such file or folder")


def test_quiet_start_up_keeps_opencv_to_its_errors(monkeypatch):
    import cv2

    monkeypatch.setattr(quiet, "_verbose", quiet._verbose)
    monkeypatch.delenv("OPENCV_LOG_LEVEL", raising=False)
    before = cv2.utils.logging.getLogLevel()
    try:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_WARNING)
        quiet.configure(verbose=False)  # cv2 is imported already: its level is set, not only the variable
        assert os.environ["OPENCV_LOG_LEVEL"] == "ERROR"
        assert cv2.utils.logging.getLogLevel() == cv2.utils.logging.LOG_LEVEL_ERROR
    finally:
        cv2.utils.logging.setLogLevel(before)
