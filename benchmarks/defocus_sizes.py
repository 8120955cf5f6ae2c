"""What an export calls defocus blur by its size: synthetic disks on held-out crops, and real lens blur.

    python benchmarks/defocus_sizes.py [--model MODEL_DIR] [--images N] [--size PX] [--pairs DIR]

Real lens blur is often smaller than the training's smallest defocus radius (2 px), and in a
slanted scene its radius changes across the image. This measures how the model reads both:
uniform disks (`psf.defocus_psf`) of radius 1 to 7 px, Gaussians of sigma 0.6 to 2 px beside
them, disks whose radius runs from one edge of the kept crop to the other
(`degrade.depth_defocus`, a random direction per crop), and a 5 px disk and a 2 px Gaussian
dithered to 200 and to 64 colours, as a GIF holds a photograph. N crops of PX pixels (default 128 of
96) per case from the held-out test photographs (the bundled photographs split as the bundled
model's fit split them, seed 0), each with Gaussian noise of sigma 0 to 2.5 as in the blur
model; the export's `serve` (its views) answers. Prints one line per case (the share of crops
called each class).

Then real lens blur, sized: DIR holds aligned pairs, `sharp/<name>` and `defocus/<name>` (default:
`$BLURNET_REALDEV/whole`, whose seven DPDD pairs are the same scene shot stopped down and wide
open; skipped when neither is given). For each textured 64 px tile of a pair, the uniform disk
(radius 1 to 10 px, 0.25 apart) that best turns the sharp frame into the defocused one (least
squares with a gain and an offset, both frames first smoothed by a 0.6 px Gaussian against their
dithering) gives the tile's blur radius; a tile is "blurred" where that disk explains it 1.5 times
better than no blur. Per radius bin: the tiles, how often the best Gaussian (sigma 0.5 to 5 px)
fits better than the best disk, and the share of the model's answers on three versions of the 96
px crop centred on each tile: the defocused frame as it is (`real`), the same place synthesised
from the sharp frame and the tile's disk (`synthesised`), and that dithered to as many colours as
the real crop holds (`synthesised_dithered`; the check set's DPDD frames are 256-colour GIFs).
Last line: JSON with the cases (`{case: {class: share}}`), `real` (`{bin: {"tiles",
"gaussian_fits_better", version: {class: share}}}`, or null), `images`, `size`.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's blurnet, installed or not

from blurnet.export import ExportedModel, default_model_dir
from data_pipeline.augment import palette_dither, sample_palette
from data_pipeline.classes import CLASS_NAMES
from data_pipeline.dataset import BlurBatchMaker, PipelineConfig
from data_pipeline.degrade import add_noise, convolve, depth_defocus
from data_pipeline.psf import defocus_psf, gaussian_psf
from data_pipeline.sources import bundled_splits, checkset_folder, read_image

MARGIN = 24  # beyond the largest disk (7 px) and its layers, so no border reaches the crop
#: Each case: how it blurs a crop with margin, given a random direction in degrees (which only the ramps use), and
#: the colours of the dithered palette it is then saved with (None: not).
CASES = {
    **{f"disk_r{r:g}": ((lambda r: lambda image, angle: convolve(image, defocus_psf(r)))(r), None)
       for r in (1.0, 1.5, 2.0, 3.0, 5.0, 7.0)},
    **{f"gaussian_s{s:g}": ((lambda s: lambda image, angle: convolve(image, gaussian_psf(s)))(s), None) for s in (0.6, 1.0, 2.0)},
    **{f"depth_r{a:g}_to_{b:g}": ((lambda a, b: lambda image, angle: depth_defocus(image, a, b, angle, MARGIN))(a, b), None)
       for a, b in ((1.0, 3.0), (2.0, 4.0), (1.0, 6.0), (3.0, 7.0))},
    **{f"{name}_palette{colours}": (blur, colours) for colours in (200, 64)
       for name, blur in (("disk_r5", lambda image, angle: convolve(image, defocus_psf(5.0))),
                          ("gaussian_s2", lambda image, angle: convolve(image, gaussian_psf(2.0))))},
}


DEFAULT_PAIRS = checkset_folder("whole")
TILE, FIT_SMOOTHING, BLURRED = 64, 0.6, 1.5
DISK_RADII = np.arange(1.0, 10.01, 0.25)
GAUSSIAN_SIGMAS = np.arange(0.5, 5.01, 0.125)
RADIUS_BINS = ((1.0, 2.0), (2.0, 3.0), (3.0, 5.0), (5.0, 10.0))


def _fit_error(source: np.ndarray, target: np.ndarray) -> float:
    """Mean squared error of the best `gain * source + offset` for `target` (flattened tiles)."""
    a = np.stack([source, np.ones_like(source)], axis=1)
    coef, *_ = np.linalg.lstsq(a, target, rcond=None)
    return float(np.mean((a @ coef - target) ** 2))


def sized_tiles(sharp: np.ndarray, defocused: np.ndarray) -> list[tuple[int, int, float, bool, bool]]:
    """`(y, x, radius, blurred, gaussian_fits_better)` for each textured `TILE` px tile of an aligned pair."""
    import cv2

    sharp, defocused = (cv2.GaussianBlur(np.asarray(i, np.float32), (0, 0), FIT_SMOOTHING) for i in (sharp, defocused))
    disks = [convolve(sharp, defocus_psf(r)) for r in DISK_RADII]
    gaussians = [convolve(sharp, gaussian_psf(s)) for s in GAUSSIAN_SIGMAS]
    h, w = sharp.shape[:2]
    tiles = []
    for y in range(0, h - TILE + 1, TILE):
        for x in range(0, w - TILE + 1, TILE):
            target = defocused[y : y + TILE, x : x + TILE].ravel()
            if target.std() < 4.0:  # flat: no evidence of any blur
                continue
            errors = [_fit_error(d[y : y + TILE, x : x + TILE].ravel(), target) for d in disks]
            gaussian = min(_fit_error(g[y : y + TILE, x : x + TILE].ravel(), target) for g in gaussians)
            none = _fit_error(sharp[y : y + TILE, x : x + TILE].ravel(), target)
            best = int(np.argmin(errors))
            tiles.append((y, x, float(DISK_RADII[best]), none > BLURRED * errors[best], gaussian < errors[best]))
    return tiles


#: What the model answers for each blurred real tile: the defocused frame as it is; the same place synthesised (the
#: sharp frame blurred by the tile's fitted disk); and that dithered to as many colours as the real crop holds.
VERSIONS = ("real", "synthesised", "synthesised_dithered")


def real_defocus(model, folder: Path, size: int) -> dict:
    """Per radius bin, the blurred tiles of the pairs in `folder`, how often a Gaussian fits them better than a disk,
    and the share of the model's answers on each of `VERSIONS` of the crops centred on them."""
    bins = {f"r{lo:g}_to_{hi:g}": {"tiles": 0, "gaussian_fits_better": 0, **{v: [] for v in VERSIONS}} for lo, hi in RADIUS_BINS}
    names = sorted(p.name for p in (folder / "defocus").iterdir() if (folder / "sharp" / p.name).is_file())
    if not names:
        raise SystemExit(f"no pairs in {str(folder)!r}: expected sharp/<name> beside defocus/<name>")
    rng = np.random.default_rng(0)  # the palettes' pixels
    for name in names:
        sharp, defocused = read_image(folder / "sharp" / name), read_image(folder / "defocus" / name)
        h, w = defocused.shape[:2]
        crops, keys, blurred_frames = {v: [] for v in VERSIONS}, [], {}
        for y, x, radius, blurred, gaussian_better in sized_tiles(sharp, defocused):
            key = next((f"r{lo:g}_to_{hi:g}" for lo, hi in RADIUS_BINS if lo <= radius < hi or radius == hi == 10.0), None)
            if not blurred or key is None:
                continue
            top = min(max(y + TILE // 2 - size // 2, 0), h - size)
            left = min(max(x + TILE // 2 - size // 2, 0), w - size)
            real = defocused[top : top + size, left : left + size].astype(np.float32)
            if radius not in blurred_frames:
                blurred_frames[radius] = convolve(sharp.astype(np.float32), defocus_psf(radius))
            synthesised = blurred_frames[radius][top : top + size, left : left + size]
            colours = len(np.unique(real.reshape(-1, 3), axis=0))
            crops["real"].append(real)
            crops["synthesised"].append(synthesised)
            crops["synthesised_dithered"].append(palette_dither(synthesised, sample_palette(synthesised, colours, rng)))
            keys.append(key)
            bins[key]["tiles"] += 1
            bins[key]["gaussian_fits_better"] += int(gaussian_better)
        for version, images in crops.items():
            if images:
                for key, answer in zip(keys, np.asarray(model(np.stack(images))).argmax(axis=1)):
                    bins[key][version].append(int(answer))
    summary = {}
    for key, b in bins.items():
        summary[key] = {"tiles": b["tiles"], "gaussian_fits_better": round(b["gaussian_fits_better"] / max(b["tiles"], 1), 3)}
        print(f"real lens blur {key:10} {b['tiles']:4} tiles, a Gaussian fits better in {summary[key]['gaussian_fits_better']:.2f}")
        for version in VERSIONS:
            shares = np.bincount(b[version], minlength=len(CLASS_NAMES)) / max(len(b[version]), 1)
            summary[key][version] = {c: round(float(v), 3) for c, v in zip(CLASS_NAMES, shares)}
            print(f"    {version:22} " + " ".join(f"{c} {v:.2f}" for c, v in summary[key][version].items()), flush=True)
    return summary


def main(argv=None) -> dict:
    """Run every case and return the JSON summary it prints last."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="export folder [default: the bundled model]")
    parser.add_argument("--images", type=int, default=128, help="crops per case")
    parser.add_argument("--size", type=int, default=96, help="crop side in pixels")
    parser.add_argument("--pairs", default=DEFAULT_PAIRS, help="folder of aligned sharp/ and defocus/ photographs "
                        "[default: $BLURNET_REALDEV/whole; without either, the real part is skipped]")
    args = parser.parse_args(argv)
    if args.images < 1:
        raise SystemExit(f"--images must be >= 1, got {args.images}")
    model = ExportedModel(args.model or default_model_dir())
    croppers = BlurBatchMaker(bundled_splits(model.image_size, seed=0)["test"], PipelineConfig(image_size=args.size),
                              "test").croppers
    summary = {}
    for case, (blur, colours) in CASES.items():
        rng = np.random.default_rng(11)  # the same crops and noise for every case
        images = []
        for _ in range(args.images):
            crop = croppers[int(rng.integers(len(croppers)))].crop(rng, args.size + 2 * MARGIN).astype(np.float32)
            noise, angle = float(rng.uniform(0.0, 2.5)), float(rng.uniform(0.0, 360.0))
            blurred = add_noise(blur(crop, angle), noise, rng)[MARGIN:-MARGIN, MARGIN:-MARGIN]
            # A GIF-like tile: dithered to a palette of its own colours (`augment.sample_palette`).
            images.append(palette_dither(blurred, sample_palette(blurred, colours, rng)) if colours else blurred)
        answers = np.asarray(model(np.stack(images))).argmax(axis=1)
        shares = np.bincount(answers, minlength=len(CLASS_NAMES)) / len(answers)
        summary[case] = {c: round(float(v), 3) for c, v in zip(CLASS_NAMES, shares)}
        print(f"{case:22} " + " ".join(f"{c} {v:.2f}" for c, v in summary[case].items()), flush=True)
    real = real_defocus(model, Path(args.pairs), args.size) if args.pairs else None
    summary = {**summary, "real": real, "images": args.images, "size": args.size}
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
