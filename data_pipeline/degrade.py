"""The blur model `B = I * K + N`, and sampling of a class and its parameters."""
from __future__ import annotations

import dataclasses
import math

import cv2
import numpy as np

from data_pipeline.classes import CLASS_NAMES, BlurRanges, class_index
from data_pipeline.psf import defocus_psf, gaussian_psf, identity_psf, motion_psf


@dataclasses.dataclass(frozen=True)
class BlurParams:
    """One sampled degradation.

    `strength` is the class's main parameter in pixels (Gaussian sigma, motion
    length, defocus radius; 0 for sharp), `angle` the motion direction in degrees
    (0 for other classes) and `noise_sigma` the additive noise on the 0..255 scale.
    """

    label: int
    strength: float = 0.0
    angle: float = 0.0
    noise_sigma: float = 0.0

    @property
    def class_name(self) -> str:
        """Name of the class, one of `CLASS_NAMES`."""
        return CLASS_NAMES[self.label]

    def as_array(self) -> np.ndarray:
        """`[strength, angle, noise_sigma]` as float32, the layout the datasets carry."""
        return np.array([self.strength, self.angle, self.noise_sigma], np.float32)


def make_psf(params: BlurParams) -> np.ndarray:
    """The PSF described by `params`."""
    name = params.class_name
    if name == "sharp":
        return identity_psf()
    if name == "gaussian":
        return gaussian_psf(params.strength)
    if name == "motion":
        return motion_psf(params.strength, params.angle)
    return defocus_psf(params.strength)


def sample_params(rng: np.random.Generator, label: int | str, ranges: BlurRanges = BlurRanges()) -> BlurParams:
    """Draw parameters of class `label` uniformly from `ranges`."""
    if isinstance(label, str):
        label = class_index(label)
    if not 0 <= int(label) < len(CLASS_NAMES):
        raise ValueError(f"label must be in 0..{len(CLASS_NAMES) - 1}, got {label!r}.")
    label = int(label)
    noise = float(rng.uniform(*ranges.noise_sigma))
    name = CLASS_NAMES[label]
    if name == "sharp":
        return BlurParams(label, 0.0, 0.0, noise)
    strength = float(rng.uniform(*ranges.strength_range(name)))
    angle = float(rng.uniform(*ranges.motion_angle)) if name == "motion" else 0.0
    return BlurParams(label, strength, angle, noise)


def convolve(image: np.ndarray, psf: np.ndarray) -> np.ndarray:
    """`image * psf` (true convolution) in float32 with reflected borders.

    `image` is HxW or HxWxC; the result has the same shape.
    """
    image = np.asarray(image, np.float32)
    if image.ndim not in (2, 3):
        raise ValueError(f"image must be HxW or HxWxC, got shape {image.shape!r}.")
    psf = np.asarray(psf, np.float32)
    if psf.ndim != 2 or psf.shape[0] % 2 == 0 or psf.shape[1] % 2 == 0:
        raise ValueError(f"psf must be a 2-D array of odd size, got shape {psf.shape!r}.")
    if psf.shape == (1, 1):
        return image * psf[0, 0]
    # filter2D correlates; flipping the kernel makes it a convolution.
    out = cv2.filter2D(image, cv2.CV_32F, psf[::-1, ::-1].copy(), borderType=cv2.BORDER_REFLECT)
    return out.reshape(image.shape)


def add_noise(image: np.ndarray, sigma: float, rng: np.random.Generator, clip: bool = True) -> np.ndarray:
    """Add zero-mean Gaussian noise of standard deviation `sigma` (0..255 scale)."""
    if not math.isfinite(sigma) or sigma < 0:
        raise ValueError(f"noise sigma must be a finite number >= 0, got {sigma!r}.")
    out = np.asarray(image, np.float32)
    if sigma > 0:
        out = out + sigma * rng.standard_normal(out.shape, dtype=np.float32)
    return np.clip(out, 0.0, 255.0) if clip else out


def degrade(image: np.ndarray, params: BlurParams, rng: np.random.Generator) -> np.ndarray:
    """`B = I * K + N`: blur `image` (0..255) with the PSF of `params`, add noise, clip to 0..255."""
    return add_noise(convolve(image, make_psf(params)), params.noise_sigma, rng)


def psf_half_size(ranges: BlurRanges) -> int:
    """Largest PSF half-width (pixels) that `ranges` can produce: the crop margin to use."""
    sizes = [
        gaussian_psf(ranges.gaussian_sigma[1]).shape[0],
        motion_psf(ranges.motion_length[1], 45.0).shape[0],
        defocus_psf(ranges.defocus_radius[1]).shape[0],
    ]
    return max(sizes) // 2
