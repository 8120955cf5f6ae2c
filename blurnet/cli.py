"""The `blurnet` command line."""
from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.version_option(package_name="blurnet")
def main():
    """Classify image blur: sharp, gaussian, motion or defocus."""


@main.command()
@click.option("--out", "out", type=click.Path(dir_okay=False), default="reports/preview.png", help="PNG file to write.")
@click.option("--data", type=click.Path(), default=None, help="Folder of sharp photographs [default: the bundled photographs].")
@click.option("--image-size", type=int, default=128, help="Crop side in pixels.")
@click.option("--seed", type=int, default=0, help="Random seed.")
def preview(out, data, image_size, seed):
    """Draw the four PSFs and sample training crops of each class."""
    from blurnet.preview import write_preview
    from data_pipeline.dataset import BlurBatchMaker, PipelineConfig
    from data_pipeline.sources import load_photographs

    config = PipelineConfig(image_size=image_size, batch_size=32, seed=seed)
    photos = _load_or_exit(data, min_size=image_size)
    images, labels, params = BlurBatchMaker(photos, config, "preview", augment=False).make_batch(0)
    click.echo(f"wrote {write_preview(out, images, labels, params)}")


def _weights_option(value):
    if value is None or value.lower() == "none":
        return None
    return value


@main.command()
@click.option("--data", type=click.Path(), default=None, help="Sharp photographs (any nesting) or a labelled folder DIR/<class>/ [default: the bundled photographs].")
@click.option("--out", type=click.Path(file_okay=False), default="saved_models", help="Folder the export goes into, as OUT/NAME/.")
@click.option("--name", default="blurnet-densenet121", help="Export name.")
@click.option("--backbone", type=click.Choice(["densenet121", "mobilenetv2", "resnet50"]), default="densenet121", help="keras.applications backbone.")
@click.option("--weights", default="imagenet", help="imagenet, none, or PATH of a Keras weights file for the backbone.")
@click.option("--image-size", type=int, default=None, help="Crop side in px [default: 64 on CPU, 128 on GPU].")
@click.option("--batch-size", type=int, default=None, help="Global batch size [default: 32 on CPU, 64 on GPU].")
@click.option("--epochs-head", type=int, default=None, help="Stage-1 epochs, backbone frozen [default: 1 on CPU, 3 on GPU; 0 with --weights none].")
@click.option("--epochs-finetune", type=int, default=None, help="Stage-2 epochs [default: 6 on CPU, 40 on GPU].")
@click.option("--steps-per-epoch", type=int, default=None, help="Training steps per epoch [default: 40 on CPU, 400 on GPU].")
@click.option("--val-images", type=int, default=None, help="Fixed validation images [default: 256 on CPU, 1024 on GPU].")
@click.option("--test-images", type=int, default=None, help="Fixed held-out test images [default: 512 on CPU, 2048 on GPU].")
@click.option("--unfreeze-from", type=click.Choice(["auto", "pool2", "pool3", "pool4", "all"]), default="auto", help="Stage-2 transition boundary [default auto: pool3 when pretrained, all from scratch].")
@click.option("--lr-head", type=float, default=1e-3, help="Stage-1 learning rate.")
@click.option("--lr-finetune", type=float, default=None, help="Stage-2 peak learning rate, cosine-decayed [default: 1e-4 pretrained, 1e-3 from scratch].")
@click.option("--highpass/--no-highpass", default=False, help="Add the high-pass residual as 3 extra input channels (needs --weights none).")
@click.option("--seed", type=int, default=0, help="Random seed (data, split, initialisation).")
@click.option("--resume", is_flag=True, default=False, help="Continue an interrupted run from its last completed epoch.")
@click.option("--run-dir", type=click.Path(file_okay=False), default="runs", help="Checkpoints, logs and TensorBoard files go to RUN_DIR/NAME/.")
def fit(**options):
    """Train a blurnet model and export it as a TensorFlow SavedModel."""
    import keras

    from blurnet.config import FitConfig
    from blurnet.model import WeightsUnavailableError
    from blurnet.train import fit as run_fit

    options["weights"] = _weights_option(options["weights"])
    keras.utils.set_random_seed(options["seed"])
    try:
        run_fit(FitConfig(**options))
    except WeightsUnavailableError as error:
        raise click.ClickException(str(error)) from None
    except (FileNotFoundError, ValueError) as error:
        raise click.ClickException(str(error)) from None
    except KeyboardInterrupt:
        raise click.ClickException("interrupted; nothing was exported. Run the same command with --resume to continue.") from None


def _load_or_exit(data, min_size):
    from data_pipeline.sources import load_photographs

    try:
        return load_photographs(data, min_size=min_size)
    except FileNotFoundError as error:
        raise click.ClickException(str(error)) from None


if __name__ == "__main__":
    sys.exit(main())
