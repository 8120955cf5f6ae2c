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


def _load_or_exit(data, min_size):
    from data_pipeline.sources import load_photographs

    try:
        return load_photographs(data, min_size=min_size)
    except FileNotFoundError as error:
        raise click.ClickException(str(error)) from None


if __name__ == "__main__":
    sys.exit(main())
