"""The `blurnet` command line."""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import sys
import time

import click

from blurnet import quiet
from blurnet.backbones import UNFREEZE_CHOICES, backbone_names
from blurnet.config import FitConfig
from data_pipeline.augment import AugmentConfig
from data_pipeline.degrade import PSF_FAMILY_PRESETS

#: `FitConfig`'s field defaults: the single source of `blurnet fit`'s defaults.
FIT_DEFAULTS = {field.name: field.default for field in dataclasses.fields(FitConfig)}


def _range_default(key: str) -> str:
    """The default `(low, high)` of a blur range (`data_pipeline.classes.BlurRanges`) as the help shows it."""
    from data_pipeline.classes import BlurRanges

    return " ".join(f"{v:g}" for v in getattr(BlurRanges(), key))


def _recipe_default(key: str) -> str:
    """The CPU and GPU recipe values of a `FitConfig` field, for a help text: "64 on CPU, 128 on GPU"."""
    return ", ".join(f"{FitConfig.RECIPES[recipe][key]} on {recipe.upper()}" for recipe in ("cpu", "gpu"))


@click.group(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.version_option(package_name="blurnet")
@click.option("-v", "--verbose", is_flag=True, default=False, help="Also show TensorFlow's start-up and C++ log lines and blurnet's debug messages (hidden by default).")
@click.option("-q", "--quiet", "quiet_", is_flag=True, default=False, help="Show only warnings and errors on stderr, not blurnet's progress messages.")
def main(verbose, quiet_):
    """Classify image blur: sharp, gaussian, motion or defocus."""
    if verbose and quiet_:
        raise click.UsageError("-v/--verbose and -q/--quiet ask for opposite things: give one.")
    quiet.configure(verbose)
    setup_logging(logging.DEBUG if verbose else logging.WARNING if quiet_ else logging.INFO)


#: The packages whose log messages the command line shows.
LOGGED_PACKAGES = ("blurnet", "data_pipeline", "benchmarks")


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is when a message is emitted (a test runner may swap it)."""

    def __init__(self):
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


class _Formatter(logging.Formatter):
    """`warning: ...` / `error: ...` for warnings and errors; the bare message for info and debug."""

    def format(self, record):
        message = super().format(record)
        return f"{record.levelname.lower()}: {message}" if record.levelno >= logging.WARNING else message


def setup_logging(level: int = logging.INFO) -> None:
    """Send blurnet's and data_pipeline's log messages at `level` and above to stderr, one handler each."""
    for name in LOGGED_PACKAGES:
        logger = logging.getLogger(name)
        for handler in [h for h in logger.handlers if isinstance(h, _StderrHandler)]:
            logger.removeHandler(handler)
        handler = _StderrHandler()
        handler.setFormatter(_Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(level)
        # Printed once, by this handler: a library that calls `logging.info` on the root logger makes Python give the
        # root a default handler (`logging.basicConfig`), which would print every record a second time.
        logger.propagate = False


def _say(message: str) -> None:
    """A progress message on stderr, left out under `-q` (which shows warnings and errors only)."""
    if logging.getLogger("blurnet").isEnabledFor(logging.INFO):
        click.echo(message, err=True)


def _start_tensorflow(device_line: bool = True) -> None:
    """Import TensorFlow with its start-up output kept off the screen (see blurnet.quiet); state the device on stderr."""
    quiet.import_tensorflow()
    if device_line:
        _say(quiet.device_line())


@main.command()
@click.option("--out", "out", type=click.Path(dir_okay=False), default="reports/previews/preview.png", help="PNG file to write (reports/previews/ is ignored by git).")
@click.option("--data", type=click.Path(), default=None, help="Folder of sharp photographs [default: the bundled photographs].")
@click.option("--image-size", type=int, default=128, help="Crop side in pixels.")
@click.option("--seed", type=int, default=0, help="Random seed.")
@click.option("--generated-scenes", type=click.IntRange(min=0), default=0, show_default=True, help="Add this many generated dead-leaves scenes to the photographs (as fit --generated-scenes).")
def preview(out, data, image_size, seed, generated_scenes):
    """Draw the PSF families, one crop through the camera steps, and training samples of each class."""
    _start_tensorflow(device_line=False)
    import numpy as np

    from blurnet.preview import pick_camera_crop, write_preview
    from data_pipeline.dataset import BlurBatchMaker, PipelineConfig
    from data_pipeline.scenes import generated_scenes as dead_leaves_scenes
    from data_pipeline.sources import load_photographs

    try:
        config = PipelineConfig(image_size=image_size, batch_size=32, seed=seed)
        photos = load_photographs(data, min_size=image_size) + dead_leaves_scenes(generated_scenes, seed)
        maker = BlurBatchMaker(photos, config, "preview", augment=True)  # as the training stream makes them
        images, labels, params = maker.make_batch(0)
        sharp_crop = pick_camera_crop(maker.croppers, np.random.default_rng(seed), maker.source_crop_size)
        click.echo(f"wrote {write_preview(out, images, labels, params, sharp_crop)}")
    except (ValueError, OSError) as error:
        raise click.ClickException(str(error)) from None


def _weights_option(value):
    if value is None or value.lower() == "none":
        return None
    return value


@main.command()
@click.option("--data", type=click.Path(), default=FIT_DEFAULTS["data"], help="Sharp photographs (any nesting) or a labelled folder DIR/<class>/ [default: the bundled photographs].")
@click.option("--out", type=click.Path(file_okay=False), default=FIT_DEFAULTS["out"], help="Folder the export goes into, as OUT/NAME/.")
@click.option("--name", default=FIT_DEFAULTS["name"], help="Export name.")
@click.option("--backbone", type=click.Choice(backbone_names()), default=FIT_DEFAULTS["backbone"], help="keras.applications backbone.")
@click.option("--weights", default=FIT_DEFAULTS["weights"] or "none", help="imagenet, none, or PATH of a Keras weights file for the backbone.")
@click.option("--image-size", type=int, default=FIT_DEFAULTS["image_size"], help=f"Crop side in px [default: {_recipe_default('image_size')}; with --init-from, that export's].")
@click.option("--batch-size", type=int, default=FIT_DEFAULTS["batch_size"], help=f"Global batch size [default: {_recipe_default('batch_size')}].")
@click.option("--epochs-head", type=int, default=FIT_DEFAULTS["epochs_head"], help=f"Stage-1 epochs, backbone frozen [default: {_recipe_default('epochs_head')}; 0 with --weights none].")
@click.option("--epochs-finetune", type=int, default=FIT_DEFAULTS["epochs_finetune"], help=f"Stage-2 epochs [default: {_recipe_default('epochs_finetune')}].")
@click.option("--steps-per-epoch", type=int, default=FIT_DEFAULTS["steps_per_epoch"], help=f"Training steps per epoch [default: {_recipe_default('steps_per_epoch')}].")
@click.option("--val-images", type=int, default=FIT_DEFAULTS["val_images"], help=f"Fixed validation images [default: {_recipe_default('val_images')}].")
@click.option("--test-images", type=int, default=FIT_DEFAULTS["test_images"], help=f"Fixed held-out test images [default: {_recipe_default('test_images')}].")
@click.option("--unfreeze-from", type=click.Choice(("auto",) + UNFREEZE_CHOICES), default=FIT_DEFAULTS["unfreeze_from"], help="Stage-2 transition boundary [default auto: pool3 when pretrained, all from scratch].")
@click.option("--freeze-batchnorm/--train-batchnorm", default=FIT_DEFAULTS["freeze_batchnorm"], help="Stage 2: keep the BatchNormalization layers as they are (moving statistics, scale and offset) or let them train [default: frozen with ImageNet weights; training from scratch or from --init-from].")
@click.option("--lr-head", type=float, default=FIT_DEFAULTS["lr_head"], help="Stage-1 learning rate.")
@click.option("--lr-finetune", type=float, default=FIT_DEFAULTS["lr_finetune"], help="Stage-2 peak learning rate, cosine-decayed [default: 1e-4 pretrained, 1e-3 from scratch].")
@click.option("--highpass/--no-highpass", default=FIT_DEFAULTS["highpass"], help="Add the high-pass residual as 3 extra input channels (needs --weights none).")
@click.option("--spectrum/--no-spectrum", default=FIT_DEFAULTS["spectrum"], show_default=True, help="Add the spectral branch (Welch-averaged log power spectrum, any weights) beside the backbone; --no-spectrum gives the plain DenseNet121.")
@click.option("--parameter-head/--no-parameter-head", default=FIT_DEFAULTS["parameter_head"], help="Train the blur-parameter head (Gaussian sigma, motion length and angle, defocus radius) with the classifier; the export gains the `estimate` endpoint. [default: on; off for a labelled folder; as the --init-from export with --epochs-finetune 0]")
@click.option("--freeze-classifier", is_flag=True, default=FIT_DEFAULTS["freeze_classifier"], help="With --init-from: train the parameter head alone; the classifier keeps the export's weights and answers exactly as before.")
@click.option("--parameter-loss-weight", type=click.FloatRange(min=0), default=FIT_DEFAULTS["parameter_loss_weight"], show_default=True, help="Weight of the parameter head's loss beside the classification loss (blurnet.parameter_head).")
@click.option("--init-from", type=click.Path(), default=FIT_DEFAULTS["init_from"], help="Start from all the weights of an export (e.g. saved_models/blurnet-densenet121: continue or fine-tune it); needs --weights none and the same --backbone/--spectrum/--highpass. [default: none]")
@click.option("--test-time-views", type=click.Choice(["1", "4", "8"]), default=str(FIT_DEFAULTS["test_time_views"]), show_default=True, callback=lambda ctx, param, value: int(value), help="The export and its held-out figures average the model over this many flipped/rotated views of each image (1 = single pass, 8x cheaper). With --init-from and --epochs-finetune 0, re-exports that model with this setting.")
@click.option("--min-sharpness", type=float, default=FIT_DEFAULTS["min_sharpness"], show_default=True, help="Photographs whose high-frequency ratio (data_pipeline.quality) is lower are left out as already blurred, and so are crops of blurred parts of the others (a defocused background); 0 keeps all (e.g. microscope images).")
@click.option("--psf-families", type=click.Choice(sorted(PSF_FAMILY_PRESETS)), default=FIT_DEFAULTS["psf_families"], show_default=True, help="Blur shapes of the generated samples: realistic adds camera-shake trajectories, real-lens apertures, barely shaken sharp samples and motion trails softened by the optics (half of the motion samples) to the classic streaks, disks and Gaussians; classic draws the classic shapes alone. The camera steps apply either way.")
@click.option("--palette-share", type=click.FloatRange(0.0, 1.0 - AugmentConfig.jpeg_probability), default=FIT_DEFAULTS["palette_share"], show_default=True, help=f"Share of the generated samples saved as dithered palette images (GIF-like, 24 to 128 colours), at most {1 - AugmentConfig.jpeg_probability:g}: another {AugmentConfig.jpeg_probability:g} of them are saved as JPEG.")
@click.option("--gaussian-sigma", type=float, nargs=2, default=None, metavar="LOW HIGH", help=f"Widen (or narrow) the Gaussian sigma range of the generated samples, in px [default: {_range_default('gaussian_sigma')}]. Recorded in blurnet.json (blur_ranges).")
@click.option("--motion-length", type=float, nargs=2, default=None, metavar="LOW HIGH", help=f"The same for the motion length (a trajectory: the streak of equal spread) [default: {_range_default('motion_length')}].")
@click.option("--defocus-radius", type=float, nargs=2, default=None, metavar="LOW HIGH", help=f"The same for the defocus radius [default: {_range_default('defocus_radius')}].")
@click.option("--noise-sigma", type=float, nargs=2, default=None, metavar="LOW HIGH", help=f"The same for the sigma of the added noise, on the 0..255 scale [default: {_range_default('noise_sigma')}].")
@click.option("--generated-scenes", type=click.IntRange(min=0), default=FIT_DEFAULTS["generated_scenes"], show_default=True, help="Add this many generated dead-leaves scenes (data_pipeline.scenes) to the training photographs; validation and the held-out test stay photographs. Crops are drawn from every training scene alike, so N scenes beside P photographs give N/(N+P) of the samples.")
@click.option("--patience", type=int, default=FIT_DEFAULTS["patience"], help="Early stopping: epochs without a better val_accuracy (with --freeze-classifier: a lower val_parameters_loss).")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=FIT_DEFAULTS["seed"], help="Random seed (data, split, initialisation).")
@click.option("--resume", is_flag=True, default=FIT_DEFAULTS["resume"], help="Continue an interrupted run from its last completed epoch.")
@click.option("--run-dir", type=click.Path(file_okay=False), default=FIT_DEFAULTS["run_dir"], help="Checkpoints, logs and TensorBoard files go to RUN_DIR/NAME/.")
@click.option("--strategy", type=click.Choice(["auto", "mirrored", "multiworker"]), default=FIT_DEFAULTS["strategy"], help="tf.distribute strategy: auto = MirroredStrategy when several GPUs are visible; multiworker reads TF_CONFIG.")
@click.option("--cpu-devices", type=click.IntRange(min=1), default=FIT_DEFAULTS["cpu_devices"], help="Split the CPU into N logical devices (data parallelism without GPUs: tests, benchmarks).")
@click.option("--mixed-precision/--no-mixed-precision", default=FIT_DEFAULTS["mixed_precision"], help="Mixed precision: float16 on GPU, bfloat16 on CPU.")
@click.option("--jit/--no-jit", default=FIT_DEFAULTS["jit"], help="Compile the training step with XLA.")
@click.option("--deterministic", is_flag=True, default=FIT_DEFAULTS["deterministic"], help="Seed Python, NumPy, TensorFlow and Keras with --seed and use TensorFlow's deterministic ops, so that a rerun on the same machine repeats the run closely, though not always bit for bit (cost and check: benchmarks/deterministic.py).")
def fit(**options):
    """Train a blurnet model and export it as a TensorFlow SavedModel."""
    _start_tensorflow(device_line=False)  # blurnet.train states the device
    import keras

    from blurnet.model import WeightsUnavailableError
    from blurnet.train import fit as run_fit

    options["weights"] = _weights_option(options["weights"])
    ranges = {key: options.pop(key) for key in ("gaussian_sigma", "motion_length", "defocus_radius", "noise_sigma")}
    options["blur_ranges"] = {key: value for key, value in ranges.items() if value is not None} or None
    try:
        keras.utils.set_random_seed(options["seed"])
        run_fit(FitConfig(**options))
    except (WeightsUnavailableError, OSError, ValueError) as error:  # OSError: a folder that cannot be made or written
        raise click.ClickException(str(error)) from None
    except KeyboardInterrupt:
        raise click.ClickException("interrupted; nothing was exported. Run the same command with --resume to continue.") from None


@main.command()
@click.option("--model", "model_dir", type=click.Path(), default=None, help="Export folder [default: saved_models/blurnet-densenet121, in the current folder or beside the blurnet package].")
@click.option("--data", type=click.Path(), default=None, help="Labelled folder DIR/<class>/<file>, each photograph answered as `blurnet predict --full` answers it [default: the generated held-out test split of the bundled photographs].")
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Report folder [default: reports/<model folder name>/].")
@click.option("--images", "num_images", type=click.IntRange(min=1), default=2048, help="Generated test images (without --data), rounded up to whole batches.")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=None, help="Seed that draws the generated test images [default: the seed of the fit, else 0]; the photographs are split by the fit's seed whatever it is, so the test stays held out.")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, help="Images per model call.")
@click.option("--baselines/--no-baselines", default=True, help="Evaluate the Laplacian and handcrafted-feature baselines too.")
@click.option("--baselines-dir", type=click.Path(file_okay=False), default=None, help="Also write the baseline comparison table there (e.g. reports/my-comparison).")
@click.option("--baseline-images", type=click.IntRange(min=8), default=4096, show_default=True, help="Crops the handcrafted baseline trains on (training stream) and the Laplacian threshold is chosen on (validation stream).")
@click.option("--jpeg", "jpeg_quality", type=click.IntRange(1, 100), default=None, help="JPEG-compress every test image at this quality first (robustness check). [default: off]")
@click.option("--compare", "compare", type=click.Path(), multiple=True, help="Another export (e.g. a MobileNetV2 fit) to evaluate on the same images, as a row of the baselines table; repeatable. [default: none]")
def report(model_dir, data, out, num_images, seed, batch_size, baselines, baselines_dir, baseline_images, compare, jpeg_quality):
    """Evaluate an exported model: metrics.json, plots, baselines and index.md."""
    _start_tensorflow()
    from blurnet.export import NotAnExportError, default_model_dir
    from blurnet.baseline_table import write_baseline_comparison
    from blurnet.atomic import check_apart, check_replaceable
    from blurnet.report import default_out_dir, summary_line, write_report

    if baselines_dir and not baselines and not compare:
        raise click.UsageError("--baselines-dir writes the table of the baselines and --compare exports beside the model: "
                               "with --no-baselines and no --compare it would hold the model alone.")
    try:
        if baselines_dir:  # checked before the evaluation, as the report's own folder is
            check_apart(baselines_dir, out or default_out_dir(model_dir or default_model_dir()), "--baselines-dir and the report")
            for used, what in ((model_dir or default_model_dir(), "the model"), (data, "--data"), *((c, "a --compare export") for c in compare)):
                if used:  # never replaced with the table
                    check_apart(baselines_dir, used, f"--baselines-dir and {what}")
            check_replaceable(baselines_dir, "baselines.json")
        folder = write_report(model_dir or default_model_dir(), data, out, num_images=num_images, seed=seed, batch_size=batch_size, baselines=baselines,
                              baseline_images=baseline_images, compare=compare, jpeg_quality=jpeg_quality)
    except (NotAnExportError, OSError, ValueError) as error:
        raise click.ClickException(str(error)) from None
    except KeyboardInterrupt:
        raise click.ClickException("interrupted; no report was written.") from None
    if baselines_dir:
        try:
            click.echo(f"baseline comparison: {write_baseline_comparison(folder, baselines_dir) / 'README.md'}")
        except (OSError, ValueError) as error:
            raise click.ClickException(f"report written to {folder}, but not the baseline comparison: {error}") from None
    try:
        click.echo(summary_line(folder))
    except (OSError, ValueError) as error:  # the report folder changed meanwhile
        raise click.ClickException(f"report written to {folder}, but it cannot be read back: {error}") from None


@main.command("export")
@click.argument("model_dir", type=click.Path())
@click.option("--format", "fmt", type=click.Choice(["keras", "onnx", "litert"]), required=True,
              help="keras: model.keras for Keras 3 on any backend (e.g. python -m blurnet.train_keras --init-from). "
                   "onnx: blurnet.onnx for ONNX Runtime (any batch and image size). litert: blurnet.tflite for phones "
                   "(tiles of the training size). onnx and litert need: pip install \"blurnet[export]\".")
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Folder to write (the model file and a copy of blurnet.json): missing, empty, or an earlier export in the same format, which it replaces [default: MODEL_DIR-FORMAT beside MODEL_DIR].")
def export_command(model_dir, fmt, out):
    """Write an export in another format: the plain network (one view, one tile) beside a copy of its blurnet.json."""
    from blurnet.formats import check_extra, export_format
    from blurnet.runtimes import MissingExtraError

    if not os.path.isfile(os.path.join(model_dir, "saved_model.pb")):  # said before TensorFlow loads
        raise click.ClickException(f"{model_dir!r} is not a blurnet export: it has no saved_model.pb (write one with 'blurnet fit').")
    try:
        check_extra(fmt)
        _start_tensorflow(device_line=False)
        path = export_format(model_dir, fmt, out)
    except (ValueError, MissingExtraError) as error:  # NotAnExportError included
        raise click.ClickException(str(error)) from None
    except OSError as error:  # a read-only or full disk: nothing was written (the folder is written atomically)
        raise click.ClickException(f"cannot write the {fmt} export: {error}") from None
    click.echo(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")


def _scale_option(ctx, param, value):
    from blurnet.classify import parse_scale

    try:
        return parse_scale(value)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


@contextlib.contextmanager
def _progress_bar(total, label, unit="photos", file=None):
    """Yield `update(n)`: a bar on stderr with count, UNIT/s and time left, when `total` > 1 and
    the stream is a terminal and `-q` was not given; else a no-op (nothing is printed)."""
    file = file or sys.stderr
    if total < 2 or not file.isatty() or logging.getLogger("blurnet").level >= logging.WARNING:  # -q: no bar
        yield None
        return
    with click.progressbar(length=total, label=label, file=file, show_pos=True, show_eta=False) as bar:
        def rate(_):
            elapsed = time.time() - bar.start
            if not bar.pos or elapsed <= 0:
                return None
            left = int(round((total - bar.pos) * elapsed / bar.pos))
            return f"{bar.pos / elapsed:.2f} {unit}/s, {left // 3600}:{left // 60 % 60:02d}:{left % 60:02d} left"

        bar.item_show_func = rate
        yield bar.update


def _check_outputs(inputs=(), count=1, output=None, map_path=None, mask_path=None, sort_into=None, folders=()) -> None:
    """A usage error, before any work, when `predict` could not write what it was asked to: `--output`, the first
    map and mask (`numbered_path`), the `--sort-into` folder, or an output that is one of the `inputs`; also maps
    and masks inside one of the input `folders`, where the next run would classify them as photographs."""
    from pathlib import Path

    from blurnet.atomic import check_writable
    from blurnet.prediction import check_outputs_spare_inputs, numbered_path

    try:
        for option, path in (("--map", map_path), ("--mask", mask_path)):
            for folder in folders if path else ():
                if Path(os.path.realpath(folder)) in Path(os.path.realpath(path)).parents:
                    raise ValueError(f"{option} {str(path)!r} is inside the input folder {folder!r}: the next run "
                                     "would classify its images as photographs; write them elsewhere")
        check_outputs_spare_inputs(list(inputs), count, output, map_path, mask_path)
        maps = [numbered_path(path, 0, count) for path in (map_path, mask_path) if path]
        for target, folder in ((output, False), *((m, False) for m in maps), (sort_into, True)):
            if target:
                check_writable(target, folder)
    except ValueError as error:
        raise click.UsageError(str(error)) from None


def _echo_paths(text: str) -> None:
    """`text` to standard output as UTF-8 bytes, file names that are not UTF-8 kept byte for byte (surrogateescape),
    whatever the terminal's encoding: one such name among thousands must not lose the whole table."""
    click.echo(text.encode("utf-8", "surrogateescape"), nl=False)


def _write_results(text: str, output) -> None:
    """`text` to `--output` (atomically) or standard output; when `--output` cannot be written (a full disk), the
    text goes to standard output instead and the command fails, so no result is lost."""
    from blurnet.prediction import write_text_atomic

    if not output:
        _echo_paths(text)
        return
    try:
        write_text_atomic(output, text)
    except OSError as error:
        _echo_paths(text)
        raise click.ClickException(f"cannot write {output}: {error}; the results are printed above instead") from None


@main.command()
@click.argument("paths", nargs=-1, required=True)
@click.option("--model", "model_dir", type=click.Path(), default=None, help="Export folder [default: saved_models/blurnet-densenet121, in the current folder or beside the blurnet package].")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", help="Output format.")
@click.option("--output", type=click.Path(dir_okay=False), default=None, help="Write the results to FILE instead of standard output.")
@click.option("--scale", default="auto", callback=_scale_option, help="Downscale factor before tiling, or auto: longer side brought to 1024 px, never upscaled.")
@click.option("--map", "map_path", type=click.Path(dir_okay=False), default=None, help="Write a blur map PNG: tiles overlapping by half, coloured by class (FILE-1.png, FILE-2.png, ... for several inputs, numbered in input order). Never an input photograph.")
@click.option("--mask", "mask_path", type=click.Path(dir_okay=False), default=None, help="Write a binary blur mask PNG at the photograph's size: white = blurred (per-pixel blur probability >= 0.5), black = sharp (FILE-1.png, ... for several inputs, numbered in input order). Never an input photograph.")
@click.option("--sort-into", "sort_into", type=click.Path(file_okay=False), default=None, help="Copy each photograph into SORT_INTO/<label>/, keeping its path below the folder argument (a pattern: below the folder before its first wildcard; file arguments: the file name). Never overwrites (name-1.jpg, ...); unreadable files stay and are listed; files already under SORT_INTO are left out; a CSV log SORT_INTO/blurnet-sort-YYYYMMDD-HHMMSS.csv records what went where. [default: no sorting]")
@click.option("--move", is_flag=True, default=False, help="With --sort-into: move instead of copy; a source is deleted only after its copy is complete and its size and SHA-256 match.")
@click.option("--dry-run", is_flag=True, default=False, help="With --sort-into: print what would be copied or moved; writes nothing (no folders, no log).")
@click.option("--full", is_flag=True, default=False, help="Answer from every textured tile with the export's own views (8 for the bundled model), about 9 times slower (benchmarks/predict.py); by default at most 24 tiles a pyramid level, sampled by texture, one view each (the same label on 32 of 32 12-megapixel benchmark photographs, benchmarks/predict.py, and on 31 of 34 real ones, benchmarks/realdev.py).")
def predict(paths, model_dir, fmt, output, scale, map_path, mask_path, sort_into, move, dry_run, full):
    """Classify the blur of images: files, folders (recursive) or glob patterns, any size."""
    from blurnet.inputs import expand_paths, folder_arguments, list_items
    from blurnet.prediction import PredictInterrupted, format_records, load_model, predict as run_predict

    if (move or dry_run) and not sort_into:
        raise click.UsageError("--move and --dry-run need --sort-into")

    checked = expand_paths(list(paths))
    if all(error for _, error in checked):  # nothing to classify: said before TensorFlow and the model load
        if output:
            _check_outputs(output=output)
        _write_results(format_records([{"path": str(path), "error": error} for path, error in checked], fmt), output)
        click.echo(f"{len(checked)} of {len(checked)} inputs failed", err=True)
        sys.exit(1)
    from blurnet.errors import NotAnExportError
    from blurnet.runtimes import MissingExtraError, runtime_file

    inputs = list(paths)
    if sort_into:
        from blurnet.sort import split_inside

        inputs, inside = split_inside(expand_paths(inputs), sort_into)
        if inside:
            _say(f"left out {len(inside)} files already under {sort_into}")
    items = list_items(inputs)  # what predict will answer, in its order
    total = len(items)
    _check_outputs([source for _, source, error in items if error is None], total, output, map_path, mask_path,
                   None if dry_run else sort_into, folder_arguments(paths))  # before TensorFlow and the model load
    on_runtime = model_dir is not None and runtime_file(model_dir) is not None  # ONNX or LiteRT: no TensorFlow
    if not on_runtime:
        _start_tensorflow()
    try:
        model = load_model(model_dir)
    except (NotAnExportError, MissingExtraError) as error:
        hint = "" if model_dir else " Train one with 'blurnet fit' or pass --model DIR."
        raise click.ClickException(f"{error}{hint}") from None
    if on_runtime:
        cores = quiet.cpu_cores()
        _say(f"device: {model.runtime}, CPU ({cores} core{'' if cores == 1 else 's'})")
    try:
        with _progress_bar(total, "classifying") as update:
            records = run_predict(inputs, model, scale, map_path=map_path, mask_path=mask_path, progress=update, full=full)
    except NotAnExportError as error:  # weights that do not fit the network, found when predict builds it
        raise click.ClickException(str(error)) from None
    except PredictInterrupted as stop:  # the photographs classified so far are written, then the command fails
        if not stop.records:
            raise click.ClickException(str(stop)) from None
        _write_results(format_records(stop.records, fmt), output)
        raise click.ClickException(f"{stop}; their results are {'in ' + str(output) if output else 'above'}") from None
    except KeyboardInterrupt:
        raise click.ClickException("interrupted") from None
    _write_results(format_records(records, fmt), output)
    failed = sum("error" in r or "map_error" in r for r in records)
    for r in records:
        if "map_error" in r:
            click.echo(f"blur map or mask for {r['path']} not written: {r['map_error']}", err=True)
    if sort_into:
        from blurnet.sort import SortInterrupted, sort_records

        try:
            with _progress_bar(len(records), "sorting", unit="files") as update:
                result = sort_records(records, sort_into, roots=folder_arguments(paths), move=move, dry_run=dry_run, progress=update)
        except (SortInterrupted, OSError) as error:
            done = getattr(error, "sort_result", None)  # what was sorted before it stopped, and where its log is
            for line in done.lines() if done is not None else []:
                click.echo(line, err=True)
            if done is not None and done.log is None and not dry_run:  # the log could not be written: shown here
                from blurnet.sort import format_log

                click.echo(f"the sort log could not be written; what went where:\n{format_log(done.rows)}", err=True, nl=False)
            raise click.ClickException("interrupted" if isinstance(error, SortInterrupted)
                                       else f"cannot sort into {sort_into}: {error}") from None
        for line in result.lines():
            if dry_run or result.failed:  # a dry run's plan, and failures, even under -q
                click.echo(line, err=True)
            else:
                _say(line)
        failed += len(result.failed)
    if failed:
        click.echo(f"{failed} of {len(records)} inputs failed", err=True)
        sys.exit(1)


if __name__ == "__main__":
    sys.exit(main())
