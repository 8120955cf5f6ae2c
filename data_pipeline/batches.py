"""Numpy batch makers: blurred crops of sharp photographs, one batch per index.

Each batch is produced by one call of `BlurBatchMaker.make_batch(index)`, whose
random generator is seeded from `(seed, stream, worker, index)`. So the same
seed always gives the same batches, whatever the number of parallel calls, and
validation and test sets (fixed ranges of indices on their own streams) are
identical every epoch and every run. Nothing here imports TensorFlow:
`data_pipeline.dataset` wraps these makers in `tf.data`, and any other loader
(a Keras `PyDataset` on another backend, a plain loop) can call them directly.

A sample: a textured crop of a sharp photograph (with a margin so the blur
never sees a border), augmented (`augment.augment_sharp`), blurred by a PSF
drawn by `degrade.sample_blur`, passed through the camera
(`camera.expose`), cut to size and, for some, saved as JPEG or as a dithered palette image.
"""
from __future__ import annotations

import dataclasses
import functools
import logging

import numpy as np

from data_pipeline.augment import AugmentConfig, augment_sharp, choose_format, save_all_as
from data_pipeline.camera import CameraConfig, expose
from data_pipeline.classes import MIN_IMAGE_SIDE, NUM_CLASSES, BlurRanges, balanced_labels
from data_pipeline.crops import DEFAULT_MIN_TEXTURE, TexturedCropper, keep_texture
from data_pipeline.degrade import PsfFamilies, psf_half_size, sample_blur
from data_pipeline.quality import MIN_HIGH_FREQUENCY_RATIO
from data_pipeline.sources import Photo

logger = logging.getLogger(__name__)

STREAMS = {"train": 0, "val": 1, "test": 2, "preview": 3}
#: Pixels the camera steps after the blur reach: the unsharp mask's Gaussian (sigma <= 1.5 px, a 13 px
#: kernel) and the sub-pixel resampling (1 px).
CAMERA_REACH = 7


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """What the pipeline makes: crop size, batch size, seed, blur ranges, PSF families, augmentation, camera.

    `families` apply to every stream (`PsfFamilies.classic()`: the plain blur
    model's shapes); `augment` and `camera` (`CameraConfig.none()`: none of its
    steps) apply where a batch maker augments: the training stream, unless the
    maker is told otherwise (`BlurBatchMaker(augment=...)`).

    `min_texture` and `min_sharpness` decide which photographs, and which crops of
    them, may serve as sharp sources (`crops.TexturedCropper`,
    `quality.high_frequency_ratio`, `quality.SharpnessMap`); 0 accepts all.
    """

    image_size: int = 128
    batch_size: int = 32
    seed: int = 0
    ranges: BlurRanges = BlurRanges()
    augment: AugmentConfig = AugmentConfig()
    min_texture: float = DEFAULT_MIN_TEXTURE
    min_sharpness: float = MIN_HIGH_FREQUENCY_RATIO
    families: PsfFamilies = PsfFamilies()
    camera: CameraConfig = CameraConfig()

    def __post_init__(self):
        if self.image_size < MIN_IMAGE_SIDE:
            raise ValueError(f"image_size must be >= {MIN_IMAGE_SIDE}, got {self.image_size!r}.")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size!r}.")

    @property
    def margin(self) -> int:
        """Pixels cropped beyond the output on each side, so blur never sees a border."""
        return psf_half_size(self.ranges, self.families)

    def camera_record(self) -> dict:
        """The camera steps, the photometric jitter and the file formats (JPEG, palettes), JSON-friendly: what
        `blurnet.json` records under `camera`, for `blurnet fit` and `blurnet.train_keras` alike."""
        return {**self.camera.to_dict(), **self.augment.jitter(), **self.augment.file_formats()}


class NoiseBank:
    """Standard-normal noise drawn once, served as random windows.

    Drawing fresh Gaussian noise for every image is the slowest step of the
    pipeline; a window at a random offset into a 4M-sample bank is iid
    N(0, 1) within an image and costs a slice. Two images' windows overlap
    with a probability of about 2 n / 4M for n values each (3 to 5 % for a
    128 px crop with its margins, three channels), and then part of one's
    noise is a shifted copy of the other's. An image larger
    than the bank (RGB crops over about 1,180 px square) gets fresh noise
    from `rng` instead. Deterministic from the seed.
    """

    SIZE = 1 << 22

    def __init__(self, seed: int):
        self.values = np.random.default_rng([seed, 7919]).standard_normal(self.SIZE, dtype=np.float32)

    def draw(self, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        """A float32 array of `shape` of standard-normal noise."""
        n = int(np.prod(shape))
        if n > self.SIZE:
            return rng.standard_normal(shape, dtype=np.float32)
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
        self.noise = noise_bank(config.seed)
        augmenting = augment if augment is not None else stream == "train"
        self.augment = config.augment if augmenting else AugmentConfig.none()
        self.camera = config.camera if augmenting else CameraConfig.none()
        # Sharpening and resampling run after the blur: the crop's margin must cover their reach too.
        self.camera_reach = CAMERA_REACH if self.camera.sharpen_probability or self.camera.resample_probability else 0
        self.margin = config.margin + self.camera_reach
        self.source_crop_size = config.image_size + 2 * self.margin
        size = self.source_crop_size
        self.croppers, self.photo_names, left_out, blurred = [], [], [], []
        for photo in photos:
            cropper = TexturedCropper(photo.image, min_texture=config.min_texture, min_sharpness=config.min_sharpness)
            if not cropper.has_texture(size, core=config.image_size):  # as make_batch judges its crops
                left_out.append(photo.name)
            elif config.min_sharpness and cropper.sharpness_map.whole() < config.min_sharpness:
                blurred.append(photo.name)
            else:
                self.croppers.append(cropper)
                self.photo_names.append(photo.name)
        self.left_out = {**{name: "too small or flat" for name in left_out}, **{name: "already blurred" for name in blurred}}
        if left_out:
            logger.warning(
                f"{stream}: left out {len(left_out)} of {len(photos)} photographs smaller than "
                f"{size} px or without texture >= {config.min_texture}: {', '.join(left_out)}",
            )
        if blurred:
            logger.warning(
                f"{stream}: left out {len(blurred)} of {len(photos)} photographs that look blurred already "
                f"(high-frequency ratio < {config.min_sharpness}), so cannot stand for 'sharp': {', '.join(blurred)}",
            )
        if not self.croppers:
            raise ValueError(
                f"{stream}: no photograph is at least {size} px, textured enough to crop {config.image_size} px "
                f"samples from, and sharp (got {len(photos)} photographs: {len(left_out)} too small or flat, "
                f"{len(blurred)} already blurred; min_sharpness={config.min_sharpness} can be lowered, 0 keeps all)."
            )

    def rejection_rate(self, soft: bool = False) -> float:
        """Fraction of crop candidates rejected so far (`soft`: those rejected as blurred only, not as flat)."""
        drawn = sum(c.drawn for c in self.croppers)
        return sum(c.soft if soft else c.rejected for c in self.croppers) / drawn if drawn else 0.0

    def rng(self, index: int) -> np.random.Generator:
        """The generator of batch `index` (pure function of seed, stream, worker, index)."""
        return np.random.default_rng([self.config.seed, STREAMS[self.stream], self.worker, int(index)])

    def make_batch(self, index) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Batch number `index`: images (B,S,S,3) float32, labels (B,) int32, params (B,3) float32."""
        index = int(index)
        cfg = self.config
        rng = self.rng(index)
        b, s, m = cfg.batch_size, cfg.image_size, self.margin
        labels = balanced_labels(rng, range(NUM_CLASSES), b, index)
        images = np.empty((b, s, s, 3), np.float32)
        params = np.empty((b, 3), np.float32)
        exposed, formats = [], []
        for i, label in enumerate(labels):
            cropper = self.croppers[int(rng.integers(len(self.croppers)))]
            p, psf = sample_blur(rng, int(label), cfg.ranges, cfg.families)
            # The crop's margin is this PSF's reach plus the camera's: small kernels blur small crops,
            # and no border effect reaches the output. The kept square is placed as for the widest margin
            # whatever the class, so where in a photograph a sample comes from never hints at its label.
            margin = min(m, max(psf.shape) // 2 + self.camera_reach)
            placed = cropper.crop(rng, s + 2 * m, core=s)  # the kept square, not its margin, must be textured
            cut = placed[m - margin : m + margin + s, m - margin : m + margin + s]
            sharp = augment_sharp(cut, rng, self.augment)
            if self.stream == "train":  # jitter may have flattened it: as textured as when it was cut
                sharp = keep_texture(sharp, cut, cfg.min_texture, margin, s)
            noisy = expose(sharp, psf, p.noise_sigma, rng, self.camera, self.noise.draw)
            exposed.append(noisy[margin : margin + s, margin : margin + s])
            formats.append(choose_format(exposed[-1], rng, self.augment))
            params[i] = p.as_array()
        images[:] = save_all_as(exposed, formats)
        return images, labels, params

    def dataset(self, start: int = 0, num_batches: int | None = None, with_params: bool = False):
        """Batches `start, start+1, ...` as a `tf.data.Dataset` (`data_pipeline.dataset.maker_dataset`; imports TensorFlow)."""
        from data_pipeline.dataset import maker_dataset

        return maker_dataset(self, start, num_batches, with_params)
