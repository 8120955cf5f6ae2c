"""What a camera does around the blur: linear light, clipped highlights, sensor noise, sharpening, resampling.

Real blur happens in linear light, before the camera's tone curve: a bright
light spread by a PSF keeps its energy, and where it exceeded the sensor's
range it clips into a streak or a disc. Then the camera adds signal-dependent
noise (shot noise, variance proportional to the signal, plus read noise),
applies its gamma, sharpens (an unsharp mask that leaves halos on edges),
may resample, and saves a JPEG. `expose` runs these steps for every class,
sharp included, so noise, halos and JPEG blocks never mean "sharp" or
"blurred" by themselves. `CameraConfig.none()` gives the plain `B = I * K + N`
of the blur model.
"""
from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from data_pipeline.degrade import check_noise_sigma, convolve

_DECODE_STEPS = 16  # table entries per grey level
_ENCODE_STEPS = 65535


def _decode(v: np.ndarray) -> np.ndarray:
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


def _encode(v: np.ndarray) -> np.ndarray:
    return np.where(v <= 0.0031308, 12.92 * v, 1.055 * np.power(v, 1.0 / 2.4) - 0.055)


_TO_LINEAR = _decode(np.arange(255 * _DECODE_STEPS + 1, dtype=np.float64) / (255 * _DECODE_STEPS)).astype(np.float32)
_TO_SRGB = (255.0 * _encode(np.arange(_ENCODE_STEPS + 1, dtype=np.float64) / _ENCODE_STEPS)).astype(np.float32)


def srgb_to_linear(image: np.ndarray) -> np.ndarray:
    """sRGB 0..255 (float) -> linear light 0..1 (float32), through a table of 1/16 grey level steps (error < 3e-4)."""
    v = np.clip(np.asarray(image, np.float32), 0.0, 255.0) * _DECODE_STEPS
    return _TO_LINEAR[(v + 0.5).astype(np.int32)]


def linear_to_srgb(linear: np.ndarray) -> np.ndarray:
    """Linear light (clipped to 0..1) -> sRGB 0..255 float32, through a 65,536-entry table (error < 0.1 grey level)."""
    v = np.clip(np.asarray(linear, np.float32), 0.0, 1.0) * _ENCODE_STEPS
    return _TO_SRGB[(v + 0.5).astype(np.int32)]


@dataclasses.dataclass(frozen=True)
class CameraConfig:
    """Probabilities and ranges of the camera steps; `CameraConfig.none()` turns them all off.

    `linear_probability`: blur in linear light (else on the sRGB values, as the
    plain blur model does). `highlight_probability`: push 1 to 6 bright spots
    2 to 12 times above white before the blur, so they clip afterwards.
    `shot_noise`: range of the shot-noise gain k (variance = k * linear signal;
    0.0004 gives about 2 grey levels in mid-tones). `sharpen_probability`,
    `sharpen_amount`: unsharp mask `I + a (I - G_s * I)` with s in 0.6..1.5 px.
    `resample_probability`: bilinear resampling at a random sub-pixel offset,
    as a resize or a demosaic leaves.
    """

    linear_probability: float = 0.5
    highlight_probability: float = 0.2
    shot_noise: tuple[float, float] = (0.0, 0.0006)
    sharpen_probability: float = 0.4
    sharpen_amount: tuple[float, float] = (0.2, 1.2)
    resample_probability: float = 0.3

    def __post_init__(self):
        for name in ("linear_probability", "highlight_probability", "sharpen_probability", "resample_probability"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value!r}.")
        if not 0.0 <= self.shot_noise[0] <= self.shot_noise[1]:
            raise ValueError(f"shot_noise must be 0 <= low <= high, got {self.shot_noise!r}.")
        if not 0.0 <= self.sharpen_amount[0] <= self.sharpen_amount[1]:
            raise ValueError(f"sharpen_amount must be 0 <= low <= high, got {self.sharpen_amount!r}.")

    @classmethod
    def none(cls) -> "CameraConfig":
        """No camera steps: blur on the sRGB values, additive Gaussian noise only."""
        return cls(linear_probability=0.0, highlight_probability=0.0, shot_noise=(0.0, 0.0), sharpen_probability=0.0,
                   resample_probability=0.0)

    def to_dict(self) -> dict:
        """JSON-friendly dict, as recorded in `blurnet.json`."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


def add_highlights(linear: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Brighten 1 to 6 small bright spots (the brightest pixels' neighbourhoods) 2 to 12 times above white."""
    out = linear.copy()
    h, w = out.shape[:2]
    luma = out.mean(axis=-1)
    for _ in range(int(rng.integers(1, 7))):
        # A random bright pixel: the brightest of a few random candidates.
        ys, xs = rng.integers(0, h, 16), rng.integers(0, w, 16)
        best = int(np.argmax(luma[ys, xs]))
        cy, cx, r = int(ys[best]), int(xs[best]), int(rng.integers(1, 4))
        spot = out[max(cy - r, 0) : cy + r + 1, max(cx - r, 0) : cx + r + 1]
        spot *= rng.uniform(2.0, 12.0) / max(float(spot.max()), 0.05)
    return out


def unsharp_mask(image: np.ndarray, amount: float, sigma: float) -> np.ndarray:
    """In-camera sharpening `I + amount * (I - GaussianBlur(I, sigma))`, clipped to 0..255."""
    soft = cv2.GaussianBlur(image, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    return np.clip(image + amount * (image - soft), 0.0, 255.0)


def resample(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Bilinear resampling at a random sub-pixel offset (up to half a pixel each way), same size."""
    dx, dy = rng.uniform(-0.5, 0.5, 2)
    matrix = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(image, matrix, image.shape[1::-1], flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def expose(sharp: np.ndarray, psf: np.ndarray, noise_sigma: float, rng: np.random.Generator, camera: CameraConfig,
           draw_noise=None) -> np.ndarray:
    """The camera around the blur: sRGB 0..255 sharp image -> blurred, noisy, sharpened sRGB 0..255 float32.

    The additive Gaussian noise has sigma `noise_sigma` (0..255 scale) and is
    added after the tone curve, as in the blur model. `draw_noise(rng, shape)`
    gives standard-normal noise (default: `rng.standard_normal`; the batch
    makers pass a faster bank of it). `ValueError` for a negative or non-finite `noise_sigma`.
    """
    noise_sigma = check_noise_sigma(noise_sigma)
    if draw_noise is None:
        def draw_noise(generator, shape):
            return generator.standard_normal(shape, dtype=np.float32)

    linear_light = rng.random() < camera.linear_probability
    if linear_light:
        linear = srgb_to_linear(sharp)
        if rng.random() < camera.highlight_probability:
            linear = add_highlights(linear, rng)
        blurred = convolve(linear, psf)
        k = rng.uniform(*camera.shot_noise)
        if k > 0:
            blurred += np.sqrt(k * np.clip(blurred, 0.0, 1.0)) * draw_noise(rng, blurred.shape)
        image = linear_to_srgb(blurred)
    else:
        image = convolve(sharp, psf)
    if noise_sigma > 0:
        image = image + noise_sigma * draw_noise(rng, image.shape)
    image = np.clip(image, 0.0, 255.0)
    if rng.random() < camera.sharpen_probability:
        image = unsharp_mask(image, rng.uniform(*camera.sharpen_amount), rng.uniform(0.6, 1.5))
    if rng.random() < camera.resample_probability:
        image = resample(image, rng)
    return image.astype(np.float32, copy=False)
