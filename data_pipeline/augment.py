"""Augmentations for training crops.

Geometric and photometric changes apply to the *sharp* crop before blurring, so
they never alter the blur itself: flips and 90-degree rotations (a motion angle
stays uniform over 0..180 either way), and colour, contrast and gamma jitter.
JPEG compression (quality 50 to 95 on 60 % of training samples, OpenCV's
default 4:2:0 chroma) applies to the final blurred, noisy image, as a camera or
a web upload would; the camera steps before it are in `data_pipeline.camera`.
"""
from __future__ import annotations

import dataclasses

import cv2
import numpy as np


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """Augmentation strengths; `AugmentConfig.none()` turns everything off."""

    flips: bool = True
    contrast: tuple[float, float] = (0.6, 1.3)
    brightness: tuple[float, float] = (-25.0, 25.0)
    gamma: tuple[float, float] = (0.7, 1.4)
    colour: float = 0.1
    jpeg_probability: float = 0.6
    jpeg_quality: tuple[int, int] = (50, 95)

    @classmethod
    def none(cls) -> "AugmentConfig":
        """No augmentation at all."""
        return cls(flips=False, contrast=(1.0, 1.0), brightness=(0.0, 0.0), gamma=(1.0, 1.0), colour=0.0, jpeg_probability=0.0)

    def __post_init__(self):
        if not 0.0 <= self.jpeg_probability <= 1.0:
            raise ValueError(f"jpeg_probability must be in [0, 1], got {self.jpeg_probability!r}.")
        if not (1 <= self.jpeg_quality[0] <= self.jpeg_quality[1] <= 100):
            raise ValueError(f"jpeg_quality must be 1 <= low <= high <= 100, got {self.jpeg_quality!r}.")
        if self.gamma[0] <= 0:
            raise ValueError(f"gamma range must be positive, got {self.gamma!r}.")


def augment_sharp(crop: np.ndarray, rng: np.random.Generator, config: AugmentConfig) -> np.ndarray:
    """Flip, rotate and jitter a sharp uint8 crop; returns float32 0..255.

    Gamma, contrast (about the crop's mean), brightness and per-channel colour
    gains are folded into one 256-entry lookup table per channel, applied with
    `cv2.LUT`, so jitter costs about as much as a copy.
    """
    if crop.dtype != np.uint8:
        raise ValueError(f"augment_sharp expects a uint8 crop, got {crop.dtype}.")
    out = crop
    if config.flips:
        out = np.rot90(out, int(rng.integers(0, 4)))
        if rng.random() < 0.5:
            out = out[:, ::-1]
    out = np.ascontiguousarray(out)
    gamma = float(rng.uniform(*config.gamma))
    contrast = float(rng.uniform(*config.contrast))
    brightness = float(rng.uniform(*config.brightness))
    gains = 1.0 + config.colour * rng.uniform(-1.0, 1.0, size=3) if config.colour else np.ones(3)
    levels = 255.0 * (np.arange(256, dtype=np.float64) / 255.0) ** gamma
    mean = 255.0 * (float(np.mean(cv2.mean(out)[:3])) / 255.0) ** gamma
    curve = (levels - mean) * contrast + mean + brightness
    table = np.clip(curve[:, None] * gains[None, :], 0.0, 255.0).astype(np.float32)
    return cv2.LUT(out, table.reshape(256, 1, 3))


def maybe_jpeg(image: np.ndarray, rng: np.random.Generator, config: AugmentConfig) -> np.ndarray:
    """With probability `jpeg_probability`, JPEG-encode and decode `image` (float 0..255 RGB)."""
    if config.jpeg_probability <= 0 or rng.random() >= config.jpeg_probability:
        return image
    return jpeg_roundtrip(image, int(rng.integers(config.jpeg_quality[0], config.jpeg_quality[1] + 1)))


def check_jpeg_quality(quality) -> int:
    """`quality` as an int; `ValueError` echoing it unless it is in 1..100."""
    if not 1 <= int(quality) <= 100:
        raise ValueError(f"JPEG quality must be in 1..100, got {quality!r}.")
    return int(quality)


def jpeg_roundtrip(image: np.ndarray, quality: int) -> np.ndarray:
    """`image` (float 0..255 RGB) JPEG-encoded at `quality` (1..100) and decoded, as float32."""
    quality = check_jpeg_quality(quality)
    image = np.asarray(image, np.float32)
    as_uint8 = np.clip(image + 0.5, 0, 255).astype(np.uint8)
    rgb = as_uint8.ndim == 3 and as_uint8.shape[2] == 3
    if rgb:  # OpenCV's JPEG expects BGR: luma and chroma must be computed on the right channels
        as_uint8 = cv2.cvtColor(as_uint8, cv2.COLOR_RGB2BGR)
    ok, encoded = cv2.imencode(".jpg", as_uint8, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:  # pragma: no cover - OpenCV always encodes a valid uint8 array
        raise ValueError(f"OpenCV could not JPEG-encode an array of shape {as_uint8.shape}.")
    decoded = cv2.imdecode(encoded, cv2.IMREAD_UNCHANGED)
    if rgb:
        decoded = cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)
    return decoded.reshape(image.shape).astype(np.float32)
