"""`tf.data` pipelines that blur sharp photographs on the fly.

Each batch is produced by one call of `BlurBatchMaker.make_batch(index)`, whose
random generator is seeded from `(seed, stream, worker, index)`. So the same
seed always gives the same batches, whatever the number of parallel calls, and
validation and test sets (fixed ranges of indices on their own streams) are
identical every epoch and every run. Batches are made in parallel with
`num_parallel_calls=AUTOTUNE` (OpenCV releases the GIL while filtering) and
prefetched.

Elements are `(images, labels)` with images float32 `(batch, size, size, 3)` in
0..255 and labels int32, or `(images, labels, params)` with `with_params=True`,
where params is float32 `(batch, 3)`: `[strength, angle, noise_sigma]` (see
`degrade.BlurParams`).
"""
from __future__ import annotations

import dataclasses
import functools
import sys

import numpy as np
import tensorflow as tf

from data_pipeline.augment import AugmentConfig, augment_sharp, maybe_jpeg
from data_pipeline.classes import NUM_CLASSES, BlurRanges
from data_pipeline.crops import DEFAULT_MIN_TEXTURE, TexturedCropper
from data_pipeline.degrade import convolve, make_psf, psf_half_size, sample_params
from data_pipeline.quality import MIN_HIGH_FREQUENCY_RATIO, high_frequency_ratio
from data_pipeline.sources import Photo

STREAMS = {"train": 0, "val": 1, "test": 2, "preview": 3}


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """What the pipeline makes: crop size, batch size, seed, blur ranges, augmentation.

    `min_texture` and `min_sharpness` decide which photographs may serve as sharp
    sources (`crops.TexturedCropper`, `quality.high_frequency_ratio`); 0 accepts all.
    """

    image_size: int = 128
    batch_size: int = 32
    seed: int = 0
    ranges: BlurRanges = BlurRanges()
    augment: AugmentConfig = AugmentConfig()
    min_texture: float = DEFAULT_MIN_TEXTURE
    min_sharpness: float = MIN_HIGH_FREQUENCY_RATIO

    def __post_init__(self):
        if self.image_size < 32:
            raise ValueError(f"image_size must be >= 32, got {self.image_size!r}.")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size!r}.")

    @property
    def margin(self) -> int:
        """Pixels cropped beyond the output on each side, so blur never sees a border."""
        return psf_half_size(self.ranges)


class NoiseBank:
    """Standard-normal noise drawn once, served as random windows.

    Drawing fresh Gaussian noise for every image is the slowest step of the
    pipeline; a window at a random offset into a 4M-sample bank is iid
    N(0, 1) within an image and costs a slice. Deterministic from the seed.
    """

    SIZE = 1 << 22

    def __init__(self, seed: int):
        self.values = np.random.default_rng([seed, 7919]).standard_normal(self.SIZE, dtype=np.float32)

    def draw(self, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        """A float32 array of `shape` of standard-normal noise."""
        n = int(np.prod(shape))
        start = int(rng.integers(0, self.SIZE - n + 1))
        return self.values[start : start + n].reshape(shape)


@functools.lru_cache(maxsize=4)
def noise_bank(seed: int) -> NoiseBank:
    """The noise bank of `seed`, drawn once per process and shared by every batch maker."""
    return NoiseBank(seed)


class BlurBatchMaker:
    """Makes batches of blurred crops from sharp photographs, one batch per index.

    `stream` names the split ("train", "val", "test" or "preview") so each gets
    its own random numbers; `worker` separates data-parallel workers. Photographs
    smaller than the source crop, too flat anywhere, or already blurred (see
    `data_pipeline.quality`) are left out and reported in one warning line each.
    `augment=False` turns augmentation off (evaluation).
    """

    def __init__(self, photos: list[Photo], config: PipelineConfig, stream: str = "train", worker: int = 0, augment: bool | None = None):
        if stream not in STREAMS:
            raise ValueError(f"stream must be one of {sorted(STREAMS)}, got {stream!r}.")
        self.config = config
        self.stream = stream
        self.worker = int(worker)
        self.margin = config.margin
        self.source_crop_size = config.image_size + 2 * self.margin
        self.noise = noise_bank(config.seed)
        self.augment = config.augment if (augment if augment is not None else stream == "train") else AugmentConfig.none()
        size = self.source_crop_size
        self.croppers, self.photo_names, left_out, blurred = [], [], [], []
        for photo in photos:
            cropper = TexturedCropper(photo.image, min_texture=config.min_texture)
            if not cropper.has_texture(size):
                left_out.append(photo.name)
            elif config.min_sharpness and high_frequency_ratio(photo.image) < config.min_sharpness:
                blurred.append(photo.name)
            else:
                self.croppers.append(cropper)
                self.photo_names.append(photo.name)
        self.left_out = {**{name: "too small or flat" for name in left_out}, **{name: "already blurred" for name in blurred}}
        if left_out:
            print(
                f"warning: {stream}: left out {len(left_out)} of {len(photos)} photographs smaller than "
                f"{size} px or without texture >= {config.min_texture}: {', '.join(left_out)}",
                file=sys.stderr,
            )
        if blurred:
            print(
                f"warning: {stream}: left out {len(blurred)} of {len(photos)} photographs that look blurred already "
                f"(high-frequency ratio < {config.min_sharpness}), so cannot stand for 'sharp': {', '.join(blurred)}",
                file=sys.stderr,
            )
        if not self.croppers:
            raise ValueError(
                f"{stream}: no photograph is at least {size} px, textured enough to crop {config.image_size} px "
                f"samples from, and sharp (got {len(photos)} photographs: {len(left_out)} too small or flat, "
                f"{len(blurred)} already blurred; min_sharpness={config.min_sharpness} can be lowered, 0 keeps all)."
            )

    def rejection_rate(self) -> float:
        """Fraction of crop candidates rejected as too flat so far."""
        drawn = sum(c.drawn for c in self.croppers)
        return sum(c.rejected for c in self.croppers) / drawn if drawn else 0.0

    def rng(self, index: int) -> np.random.Generator:
        """The generator of batch `index` (pure function of seed, stream, worker, index)."""
        return np.random.default_rng([self.config.seed, STREAMS[self.stream], self.worker, int(index)])

    def make_batch(self, index) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Batch number `index`: images (B,S,S,3) float32, labels (B,) int32, params (B,3) float32."""
        index = int(index)
        cfg = self.config
        rng = self.rng(index)
        b, s, m = cfg.batch_size, cfg.image_size, self.margin
        # Consecutive batches cycle through the classes, so any run of batches is balanced.
        labels = rng.permutation((np.arange(b) + index * b) % NUM_CLASSES).astype(np.int32)
        images = np.empty((b, s, s, 3), np.float32)
        params = np.empty((b, 3), np.float32)
        for i, label in enumerate(labels):
            cropper = self.croppers[int(rng.integers(len(self.croppers)))]
            sharp = augment_sharp(cropper.crop(rng, self.source_crop_size), rng, self.augment)
            p = sample_params(rng, int(label), cfg.ranges)
            blurred = convolve(sharp, make_psf(p))[m : m + s, m : m + s]
            noisy = blurred + p.noise_sigma * self.noise.draw(rng, blurred.shape)
            np.clip(noisy, 0.0, 255.0, out=noisy)
            images[i] = maybe_jpeg(noisy, rng, self.augment)
            params[i] = p.as_array()
        return images, labels, params

    def dataset(self, start: int = 0, num_batches: int | None = None, with_params: bool = False) -> tf.data.Dataset:
        """Batches `start, start+1, ...` (`num_batches` of them, or forever) as a `tf.data.Dataset`."""
        return batch_dataset(self.make_batch, self.config.batch_size, self.config.image_size, start, num_batches, with_params)


def batch_dataset(make_batch, batch_size: int, image_size: int, start: int = 0, num_batches: int | None = None,
                  with_params: bool = False) -> tf.data.Dataset:
    """A `tf.data.Dataset` of `make_batch(start)`, `make_batch(start + 1)`, ... (`num_batches` of them, or forever).

    `make_batch(index)` returns images `(batch_size, image_size, image_size, 3)`
    float32, labels int32 and params `(batch_size, 3)` float32; batches are made in
    parallel, kept in order, and prefetched.
    """
    end = start + num_batches if num_batches is not None else 2**62
    b, s = batch_size, image_size

    def produce(index):
        images, labels, params = tf.numpy_function(make_batch, [index], [tf.float32, tf.int32, tf.float32], stateful=False)
        images.set_shape((b, s, s, 3))
        labels.set_shape((b,))
        params.set_shape((b, 3))
        return (images, labels, params) if with_params else (images, labels)

    ds = tf.data.Dataset.range(start, end).map(produce, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE)


def training_dataset(photos: list[Photo], config: PipelineConfig, worker: int = 0, start: int = 0) -> tf.data.Dataset:
    """Endless, augmented, class-balanced training batches (per-worker random streams)."""
    return BlurBatchMaker(photos, config, "train", worker=worker).dataset(start=start)


def evaluation_dataset(photos: list[Photo], config: PipelineConfig, split: str, num_images: int, with_params: bool = False) -> tf.data.Dataset:
    """A fixed set of `num_images` (rounded up to whole batches) for "val" or "test", no augmentation."""
    if split not in ("val", "test"):
        raise ValueError(f"split must be 'val' or 'test', got {split!r}.")
    if num_images < 1:
        raise ValueError(f"num_images must be >= 1, got {num_images!r}.")
    num_batches = -(-num_images // config.batch_size)
    return BlurBatchMaker(photos, config, split).dataset(num_batches=num_batches, with_params=with_params)
