"""Classical blur-parameter estimators: the baseline `blurnet report` sets beside the parameter head.

No learning, numpy only. For every image, all three estimates (each is the answer *if* the image has
that kind of blur), in the parameter head's layout (`data_pipeline.parameters.PARAMETER_TARGETS`):

- **sigma** from the spectral fall-off: a Gaussian PSF multiplies the power spectrum by
  `exp(-4 pi^2 sigma^2 f^2)`; the radially averaged log power is fitted with `a - b log f - c f^2`
  (the `log f` term absorbs the natural-image fall-off) and `sigma = sqrt(c) / (2 pi)`.
- **motion length and angle** from the cepstrum: a streak of length L puts regularly spaced zeros
  across the spectrum, i.e. a negative peak in the cepstrum at distance L along the streak.
- **defocus radius** from the cepstrum too: a disk of radius R leaves rings in the spectrum spaced
  1 / (2R) cycles/px, i.e. a negative ring in the cepstrum at radius 2R.

On 96 px crops of 8 bundled photographs blurred with the project's PSFs (no noise, no JPEG;
`tests/test_parameter_baselines.py`): median errors sigma 0.25 px, motion length 0.05 px, angle 0
degrees, radius 0.5 px; the means are larger (0.89 px, 0.93 px, 7.0 degrees, 1.4 px) because on a
few photographs the image's own spectrum wins. On the held-out test images (noise, JPEG, the
camera) the "Blur parameters" table of `blurnet report` has their figures beside the model's.
"""
from __future__ import annotations

import numpy as np

_GRAY = np.array([0.299, 0.587, 0.114])
SIGMA_BAND = (0.03, 0.35)  # cycles/px fitted for sigma, where the power is FLOOR_MARGIN above the noise floor
FLOOR_MARGIN = 2.0  # nats above the median log power at 0.4 to 0.5 cycles/px
MIN_QUEFRENCY = 3.0  # px: the cepstrum's centre holds the image's own spectrum, not the PSF's


def _spectra(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Windowed log power spectra `(n, h, w)` of the gray images and each frequency's radius in cycles/px."""
    gray = np.tensordot(images.astype(np.float64), _GRAY, axes=([3], [0]))
    gray -= gray.mean(axis=(1, 2), keepdims=True)
    h, w = gray.shape[1:]
    window = np.outer(np.hanning(h), np.hanning(w))
    power = np.abs(np.fft.fft2(gray * window)) ** 2
    log_power = np.log(power + 1e-3 * power.mean(axis=(1, 2), keepdims=True) + 1e-12)
    radius = np.hypot(*np.meshgrid(np.fft.fftfreq(h), np.fft.fftfreq(w), indexing="ij"))
    return log_power, radius


def _radial_profiles(log_power: np.ndarray, radius: np.ndarray, bins: int = 48) -> tuple[np.ndarray, np.ndarray]:
    """Radially averaged log power `(n, bins)` over 0..0.5 cycles/px, and the bins' centres."""
    edges = np.linspace(0.0, 0.5, bins + 1)
    index = np.clip(np.digitize(radius.reshape(-1), edges) - 1, 0, bins - 1)
    counts = np.maximum(np.bincount(index, minlength=bins), 1)
    profiles = np.stack([np.bincount(index, weights=lp.reshape(-1), minlength=bins) for lp in log_power]) / counts
    return profiles, 0.5 * (edges[1:] + edges[:-1])


def _sigma(log_power: np.ndarray, radius: np.ndarray) -> np.ndarray:
    """Gaussian sigma (px) per image from the fitted spectral fall-off, over the band above the noise floor."""
    profiles, f = _radial_profiles(log_power, radius)
    floor = np.median(profiles[:, f >= 0.4], axis=1, keepdims=True)
    out = np.zeros(len(profiles))
    for i, profile in enumerate(profiles):
        above = (f >= SIGMA_BAND[0]) & (f <= SIGMA_BAND[1]) & (profile > floor[i] + FLOOR_MARGIN)
        if above.sum() < 4:
            continue
        design = np.stack([np.ones(above.sum()), -np.log(f[above]), -(f[above] ** 2)], axis=1)
        coefficients, *_ = np.linalg.lstsq(design, profile[above], rcond=None)
        out[i] = np.sqrt(max(coefficients[2], 0.0)) / (2 * np.pi)
    return out


def _cepstra(log_power: np.ndarray) -> np.ndarray:
    """Real cepstra `(n, h, w)`, centred (`fftshift`)."""
    return np.fft.fftshift(np.real(np.fft.ifft2(log_power - log_power.mean(axis=(1, 2), keepdims=True))), axes=(1, 2))


def _motion(cepstra: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Length (px) and angle (degrees, counter-clockwise on screen, 0..180) of the deepest cepstral minimum."""
    n, h, w = cepstra.shape
    dy, dx = np.meshgrid(np.arange(h) - h // 2, np.arange(w) - w // 2, indexing="ij")
    outside = (np.hypot(dy, dx) >= MIN_QUEFRENCY) & (np.hypot(dy, dx) <= min(h, w) // 2 - 2)
    flat = np.where(outside[None], cepstra, np.inf).reshape(n, -1)
    best = np.argmin(flat, axis=1)
    y, x = dy.reshape(-1)[best], dx.reshape(-1)[best]
    return np.hypot(y, x).astype(np.float64), np.mod(np.degrees(np.arctan2(-y, x)), 180.0)


def _radius(cepstra: np.ndarray) -> np.ndarray:
    """Defocus radius (px): half the radius of the cepstrum's most negative ring."""
    n, h, w = cepstra.shape
    dy, dx = np.meshgrid(np.arange(h) - h // 2, np.arange(w) - w // 2, indexing="ij")
    rings = np.rint(np.hypot(dy, dx)).astype(int)
    largest = min(h, w) // 2 - 2
    counts = np.bincount(rings.reshape(-1), minlength=largest + 1)[: largest + 1]
    means = np.stack([np.bincount(rings.reshape(-1), weights=c.reshape(-1), minlength=largest + 1)[: largest + 1]
                      for c in cepstra]) / np.maximum(counts, 1)
    start = int(MIN_QUEFRENCY)
    return (start + np.argmin(means[:, start:], axis=1)) / 2.0


def estimate_parameters(images) -> np.ndarray:
    """Classical estimates `(n, 5)` float32 (sigma, length, cos 2θ, sin 2θ, radius) for RGB images `(n, h, w, 3)`, 0..255."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[3] != 3 or min(images.shape[1:3]) < 32:
        raise ValueError(f"images must have shape (n, h, w, 3) with h, w >= 32, got {images.shape!r}.")
    log_power, radius = _spectra(images)
    cepstra = _cepstra(log_power)
    length, angle = _motion(cepstra)
    doubled = np.radians(2.0 * angle)
    return np.stack([_sigma(log_power, radius), length, np.cos(doubled), np.sin(doubled), _radius(cepstra)],
                    axis=1).astype(np.float32)
