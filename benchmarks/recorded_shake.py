"""What an export calls real camera shake: recorded shake PSFs on held-out photographs, beside straight streaks.

    python benchmarks/recorded_shake.py [--model MODEL_DIR] [--kernels DIR] [--images N] [--size PX]

DIR (default: `$BLURNET_REALDEV/kernels`, the check set's recorded camera-shake PSFs of Köhler et al.
2012, the ones behind four of its shaken photographs; without either, the run prints `{"skipped": ...}`
and stops) holds PSF images: bright where the camera's
light fell. Each is read as a PSF (`recorded_kernel`: gray, its JPEG noise floor of 5 % of the
peak taken off, odd sides, sum 1), then used at its recorded size and shrunk by 2 and by 4
(`shrunk`), since a shake's size in pixels depends on the photograph's resolution. Every such
kernel blurs N crops of PX pixels (default 128 of 96) from the held-out test photographs (the
bundled photographs split as the bundled model's fit split them, seed 0), each with Gaussian noise
of sigma 0 to 2.5 as in the blur model; beside it, a straight streak (`psf.motion_psf`) of the
same spread (`psf.motion_spread`: the length of the streak with the same second moments) and
angle, on the same crops with the same noise, and that streak softened by a Gaussian of 1 px
(`psf.soften`, as `PsfFamilies.motion_softness` softens training trails). So a recorded kernel that
reads `sharp` or `gaussian` where its streak reads `motion` is missed for its shape (dwell points,
trails a few pixels wide), not its size. The
export's `serve` (its views) answers. Then each held-out photograph, blurred whole by each
kernel, through `blurnet predict` as a user runs it (`whole_photos`).

Prints one line per case: the kernel's spread and isotropy (`psf.psf_isotropy`: 0 for a line, 1
for a disk) and the share of crops called each class. Last line: JSON with `kernels` (`{name:
{"spread_px", "isotropy", "recorded": {class: share}, "streak": {...}, "softened_streak": {...},
"whole_photos": [label, ...]}}`, names like `Kernel1_1_x0.5`), `sharp` (the unblurred crops' shares),
`motion_recall` (by version, over every case), `images`, `size`.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's blurnet, installed or not

from blurnet.export import ExportedModel, default_model_dir
from blurnet.prediction import predict
from data_pipeline.classes import CLASS_NAMES
from data_pipeline.dataset import BlurBatchMaker, PipelineConfig
from data_pipeline.degrade import add_noise, convolve
from data_pipeline.psf import motion_psf, motion_spread, psf_isotropy, soften
from data_pipeline.sources import bundled_splits, checkset_folder, list_image_files, read_image, skipped_without_checkset

DEFAULT_KERNELS = checkset_folder("kernels")
NOISE_FLOOR = 0.05  # of the peak: the recorded PSFs are JPEG-derived images, grey where no light fell
SHRINK = (1, 2, 4)
SOFTENED_STREAK_SIGMA = 1.0  # px: the top of the training's softness range (`degrade.MOTION_SOFTNESS_SIGMA`)
VERSIONS = ("recorded", "streak", "softened_streak")


def centred(kernel: np.ndarray) -> np.ndarray:
    """`kernel` padded with zeros to odd sides whose middle pixel is within 0.5 px of its centroid, summing to 1, so
    that blurring with it shifts nothing."""
    kernel = np.pad(kernel, ((0, 1 - kernel.shape[0] % 2), (0, 1 - kernel.shape[1] % 2)))
    pads = []
    for axis in (0, 1):
        profile = kernel.sum(axis=1 - axis)
        centroid = float((profile * np.arange(len(profile))).sum() / profile.sum())
        shift = 2 * round((len(profile) - 1) / 2 - centroid)  # even: the sides stay odd
        pads.append((max(shift, 0), max(-shift, 0)))
    kernel = np.pad(kernel, pads)
    return kernel / kernel.sum()


def recorded_kernel(path: str | os.PathLike, floor: float = NOISE_FLOOR) -> np.ndarray:
    """The PSF in the image at `path`: its gray values less `floor` of the peak (clipped at 0), `centred`.
    `ValueError` for an image with no value above the floor."""
    gray = read_image(path).astype(np.float64).mean(axis=2)
    kernel = np.clip(gray - floor * gray.max(), 0.0, None)
    if kernel.sum() <= 0:
        raise ValueError(f"{str(path)!r} holds no PSF: no pixel above {floor:g} of its peak.")
    return centred(kernel)


def shrunk(kernel: np.ndarray, factor: int) -> np.ndarray:
    """`kernel` shrunk `factor` times in each direction (area-averaged), `centred`: the same shake in a photograph
    of `factor` times fewer pixels a side."""
    if factor == 1:
        return kernel
    height, width = (max(1, round(s / factor)) for s in kernel.shape)
    return centred(cv2.resize(kernel, (width, height), interpolation=cv2.INTER_AREA))


def streaks(kernel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The straight streak of `kernel`'s spread and angle (`psf.motion_spread`), and that streak softened by
    `SOFTENED_STREAK_SIGMA`."""
    spread, angle = motion_spread(kernel)
    streak = motion_psf(max(spread, 1.0), angle)
    return streak, soften(streak, SOFTENED_STREAK_SIGMA)


def shares(answers: np.ndarray) -> dict:
    """`{class: share}` of a vector of class indices."""
    counts = np.bincount(answers, minlength=len(CLASS_NAMES)) / max(len(answers), 1)
    return {c: round(float(v), 3) for c, v in zip(CLASS_NAMES, counts)}


def main(argv=None) -> dict:
    """Run every case and return the JSON summary it prints last."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="export folder [default: the bundled model]")
    parser.add_argument("--kernels", default=DEFAULT_KERNELS, help="folder of recorded PSF images [default: $BLURNET_REALDEV/kernels]")
    parser.add_argument("--images", type=int, default=128, help="crops per case")
    parser.add_argument("--size", type=int, default=96, help="crop side in pixels")
    args = parser.parse_args(argv)
    if args.kernels is None:
        return skipped_without_checkset("--kernels")
    if args.images < 1:
        parser.error(f"--images must be >= 1, got {args.images}")
    paths = list_image_files(args.kernels) if Path(args.kernels).is_dir() else []
    if not paths:
        raise SystemExit(f"no PSF images in {args.kernels!r}")
    model = ExportedModel(args.model or default_model_dir())
    held_out = bundled_splits(model.image_size, seed=0)["test"]
    test = BlurBatchMaker(held_out, PipelineConfig(image_size=args.size), "test")
    photos = [p.image for p in held_out if p.name in test.photo_names]
    kernels = {f"{path.stem}_x{1 / f:g}": shrunk(recorded_kernel(path), f) for path in paths for f in SHRINK}
    versions = {name: dict(zip(VERSIONS, (kernel, *streaks(kernel)))) for name, kernel in kernels.items()}
    margin = max(max(k.shape) for three in versions.values() for k in three.values()) // 2 + 1  # no border reaches a crop
    rng = np.random.default_rng(11)  # the same crops and noise for every case
    crops = [test.croppers[int(rng.integers(len(test.croppers)))].crop(rng, args.size + 2 * margin).astype(np.float32)
             for _ in range(args.images)]
    noises = [int(rng.integers(2**31)) for _ in crops]
    noise_sigmas = rng.uniform(0.0, 2.5, len(crops))

    def answers(kernel: np.ndarray) -> np.ndarray:
        images = [add_noise(convolve(crop, kernel), s, np.random.default_rng(n))[margin:-margin, margin:-margin]
                  for crop, s, n in zip(crops, noise_sigmas, noises)]
        return np.asarray(model(np.stack(images))).argmax(axis=1)

    sharp = shares(answers(np.ones((1, 1), np.float32)))
    print(f"{'unblurred':18} " + " ".join(f"{c} {v:.2f}" for c, v in sharp.items()), flush=True)
    summary, motion = {}, {version: [] for version in VERSIONS}
    for name, kernel in kernels.items():
        spread = motion_spread(kernel)[0]
        answered = {version: answers(k) for version, k in versions[name].items()}
        for version, found in answered.items():
            motion[version].append(found == CLASS_NAMES.index("motion"))
        labels = [r.get("label", "error") for r in predict([convolve(p, kernel).clip(0, 255).astype(np.uint8) for p in photos],
                                                           model=model)]
        summary[name] = {"spread_px": round(spread, 2), "isotropy": round(psf_isotropy(kernel), 3),
                         **{version: shares(found) for version, found in answered.items()}, "whole_photos": labels}
        print(f"{name:18} spread {spread:5.1f} px, isotropy {summary[name]['isotropy']:.2f}", flush=True)
        for version in VERSIONS:
            print(f"    {version:15} " + " ".join(f"{c} {v:.2f}" for c, v in summary[name][version].items()), flush=True)
        print(f"    whole photographs ({', '.join(test.photo_names)}): {', '.join(labels)}", flush=True)
    recall = {version: round(float(np.mean(np.concatenate(hits))), 3) for version, hits in motion.items()}
    print(f"motion recall over every case: recorded kernels {recall['recorded']:.3f}, streaks of the same spread "
          f"{recall['streak']:.3f}, those softened by {SOFTENED_STREAK_SIGMA:g} px {recall['softened_streak']:.3f}")
    result = {"kernels": summary, "sharp": sharp, "motion_recall": recall, "images": args.images, "size": args.size}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
