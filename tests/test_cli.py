import numpy as np
from click.testing import CliRunner

from blurnet.cli import main


def test_preview_writes_a_png(tmp_path, photo_folder):
    out = tmp_path / "p.png"
    result = CliRunner().invoke(main, ["preview", "--out", str(out), "--data", str(photo_folder), "--image-size", "48"])
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000


def test_preview_draws_from_generated_scenes_too(tmp_path, photo_folder, monkeypatch):
    import blurnet.preview
    import data_pipeline.batches
    from data_pipeline import scenes

    made, drawn = [], []
    real_maker = data_pipeline.batches.BlurBatchMaker.__init__

    def spy(self, photos, *args, **kwargs):
        made.extend(p.name for p in photos)
        real_maker(self, photos, *args, **kwargs)

    monkeypatch.setattr(data_pipeline.batches.BlurBatchMaker, "__init__", spy)
    monkeypatch.setattr(blurnet.preview, "write_preview", lambda out, images, *rest: drawn.append(images.shape) or out)
    result = CliRunner().invoke(main, ["preview", "--out", str(tmp_path / "p.png"), "--data", str(photo_folder),
                                       "--image-size", "48", "--generated-scenes", "2"])
    assert result.exit_code == 0, result.output
    assert made[-2:] == ["dead-leaves-0", "dead-leaves-1"] and len(made) == 2 + len(list(photo_folder.rglob("*.png")))
    assert drawn == [(32, 48, 48, 3)] and scenes.generated_scenes(0) == []


def test_preview_bad_input_is_a_clear_error(tmp_path, photo_folder):
    result = CliRunner().invoke(main, ["preview", "--out", str(tmp_path / "p.png"), "--image-size", "16", "--data", str(photo_folder)])
    assert result.exit_code == 1 and "image_size must be >= 32, got 16" in result.output
    result = CliRunner().invoke(main, ["preview", "--out", str(tmp_path / "p.png"), "--data", str(tmp_path / "none")])
    assert result.exit_code == 1 and "does not exist" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "p.png").exists()


def test_fit_help_states_defaults():
    result = CliRunner().invoke(main, ["fit", "--help"])
    assert result.exit_code == 0
    for text in ["--weights", "default: imagenet", "--unfreeze-from", "--resume", "--strategy", "--mixed-precision"]:
        assert text in result.output


def test_fit_options_are_fitconfigs_fields_with_its_defaults():
    import dataclasses

    from blurnet.config import FitConfig

    from data_pipeline.classes import BlurRanges

    params = {p.name: p for p in main.commands["fit"].params if p.name != "help"}
    fields = {f.name: f.default for f in dataclasses.fields(FitConfig)}
    ranges = {"gaussian_sigma", "motion_length", "defocus_radius", "noise_sigma"}  # one option each, FitConfig.blur_ranges
    assert ranges <= {f.name for f in dataclasses.fields(BlurRanges)} and all(params[name].default is None for name in ranges)
    assert set(params) - ranges == set(fields) - {"blur_ranges"} and fields["blur_ranges"] is None
    params = {name: param for name, param in params.items() if name not in ranges}
    for name, param in params.items():
        default = param.type_cast_value(None, param.default) if param.default is not None else None
        if name == "test_time_views":
            default = int(default)  # a click.Choice of strings
        if name == "weights":
            default = None if default == "none" else default
        assert default == fields[name], (name, default, fields[name])
        assert type(default) is type(fields[name]), name


def test_fit_passes_test_time_views_as_an_int(monkeypatch):
    import blurnet.train

    seen = []
    monkeypatch.setattr(blurnet.train, "fit", seen.append)  # records the FitConfig instead of training
    for args in (["--test-time-views", "4"], []):
        result = CliRunner().invoke(main, ["fit", "--weights", "none", *args])
        assert result.exit_code == 0, result.output
    assert [config.test_time_views for config in seen] == [4, 8]  # ints; 8 by default
    bad = CliRunner().invoke(main, ["fit", "--weights", "none", "--test-time-views", "3"])
    assert bad.exit_code == 2 and "'3' is not one of '1', '4', '8'" in bad.output and len(seen) == 2
    share = CliRunner().invoke(main, ["fit", "--weights", "none", "--palette-share", "0.3"])
    assert share.exit_code == 0 and seen[-1].palette_share == 0.3 and seen[0].palette_share == 0.05
    too_many = CliRunner().invoke(main, ["fit", "--weights", "none", "--palette-share", "0.5"])
    assert too_many.exit_code == 2 and "0.5 is not in the range 0.0<=x<=0.4" in too_many.output and len(seen) == 3
    wide = CliRunner().invoke(main, ["fit", "--weights", "none", "--motion-length", "5", "40", "--noise-sigma", "0", "5"])
    assert wide.exit_code == 0 and seen[-1].blur_ranges == {"motion_length": (5.0, 40.0), "noise_sigma": (0.0, 5.0)}
    assert seen[0].blur_ranges is None  # the SPEC's ranges by default
    for seed in ("-1", "4294967296"):  # Keras seeds with 0..2**32 - 1: outside it a usage error, not a traceback
        refused = CliRunner().invoke(main, ["fit", "--weights", "none", "--seed", seed])
        assert refused.exit_code == 2 and f"{seed} is not in the range 0<=x<=4294967295" in refused.output
    assert len(seen) == 4


def test_default_outputs_are_ignored_by_git_and_committed_reports_are_not():
    import subprocess
    from pathlib import Path

    import pytest

    root = Path(__file__).resolve().parent.parent
    preview_out = next(p for p in main.commands["preview"].params if p.name == "out").default
    written = [preview_out, "reports/quickstart/index.md", "saved_models/quickstart/blurnet.json", "runs/quickstart/best.weights.h5"]
    committed = ["reports/preview.png", "reports/blurnet-densenet121/index.md", "reports/realdev/index.md",
                 "saved_models/blurnet-densenet121/blurnet.json"]
    try:
        result = subprocess.run(["git", "check-ignore", "--no-index", *written, *committed], cwd=root, capture_output=True, text=True)
    except OSError:
        pytest.skip("git is not installed")
    if result.returncode == 128:
        pytest.skip("not a git checkout")
    assert result.stdout.splitlines() == written


def test_committed_files_name_no_folder_of_the_machine_they_were_made_on():
    """README, model cards, reports, benchmarks, code and the bundled model's `blurnet.json` name paths inside the
    repository only: a user's checkout has no such folder (the tests, which build such paths, are left out)."""
    import re
    import subprocess
    from pathlib import Path

    import pytest

    root = Path(__file__).resolve().parent.parent
    try:
        listed = subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True, text=True)
    except OSError:
        pytest.skip("git is not installed")
    if listed.returncode != 0:
        pytest.skip("not a git checkout")
    machine_path = re.compile(r"(?<![\w.~])/(?:work|tmp|home|root|check|Users|mnt)/")
    found, read = [], 0
    for name in listed.stdout.split("\0"):
        path = root / name
        if not name or name.startswith("tests/") or not path.is_file() or path.stat().st_size > 2_000_000:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:  # images, the SavedModel
            continue
        read += 1
        found += [f"{name}:{text.count(chr(10), 0, m.start()) + 1}: {m.group(0)}" for m in machine_path.finditer(text)]
    assert read > 80 and "saved_models/blurnet-densenet121/blurnet.json" in listed.stdout
    assert found == []


def test_fit_that_cannot_make_its_output_folder_is_a_clean_error_before_training(tmp_path, photo_folder):
    (tmp_path / "a_file").write_text("x")
    result = CliRunner().invoke(main, ["fit", "--weights", "none", "--backbone", "mobilenetv2", "--data", str(photo_folder),
                                       "--out", str(tmp_path / "a_file" / "sub"), "--run-dir", str(tmp_path / "runs"),
                                       "--image-size", "32", "--steps-per-epoch", "1"])
    assert result.exit_code == 1 and f"{str(tmp_path / 'a_file')!r} is not a folder" in result.output, result.output
    assert not isinstance(result.exception, OSError)  # a ClickException's exit, not a traceback
    assert (tmp_path / "a_file").read_text() == "x" and not (tmp_path / "runs").exists()


def test_options_that_ask_for_opposite_things_are_refused_before_any_work(tmp_path):
    result = CliRunner().invoke(main, ["-v", "-q", "predict", str(tmp_path / "missing.jpg")])
    assert result.exit_code == 2 and "-v/--verbose and -q/--quiet ask for opposite things" in result.output
    table = tmp_path / "table"
    result = CliRunner().invoke(main, ["report", "--no-baselines", "--baselines-dir", str(table), "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "it would hold the model alone" in result.output
    assert not table.exists() and not (tmp_path / "r").exists()
