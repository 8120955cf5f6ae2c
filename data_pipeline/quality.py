"""Is a photograph sharp enough to be a source of the `sharp` class?

The pipeline labels every unblurred crop `sharp`, so a source that is already
blurred (a microscope image, a soft scan) teaches and tests the wrong label: the
bundled `cell` image, blurred by its optics, was called gaussian in 88 % of its
`sharp` crops by both the model and a spectral baseline.

`high_frequency_ratio` measures what such sources lack: the mean power at high
frequencies (radius > 0.25 cycles/px) over the mean power at middle frequencies
(0.0625 to 0.125 cycles/px), from a Welch average over 32 x 32 Hann windows of
the grey image. The sharp bundled photographs score 0.0066 to 0.083; a Gaussian
blur of sigma 1.0 (the mildest blur of the default ranges) divides the score by 19
to 78.
`MIN_HIGH_FREQUENCY_RATIO` = 0.003 sits between the two groups of the bundled
photographs: it leaves out cell (0.0005), retina (0.0013) and brick (0.0019).
"""
from __future__ import annotations

import numpy as np

MIN_HIGH_FREQUENCY_RATIO = 0.003
_WINDOW = 32


def high_frequency_ratio(image: np.ndarray) -> float:
    """High- over middle-frequency mean power of an image (grey or RGB, any size >= 32 px); higher is sharper."""
    image = np.asarray(image, np.float32)
    gray = image.mean(axis=-1) if image.ndim == 3 else image
    h, w = gray.shape
    if min(h, w) < _WINDOW:
        raise ValueError(f"image must be at least {_WINDOW} px on each side, got {h}x{w}.")
    hann = np.outer(np.hanning(_WINDOW), np.hanning(_WINDOW)).astype(np.float32)
    power = np.zeros((_WINDOW, _WINDOW), np.float64)
    for y in range(0, h - _WINDOW + 1, _WINDOW):  # one band of windows at a time keeps memory small
        band = gray[y : y + _WINDOW, : (w // _WINDOW) * _WINDOW]
        windows = band.reshape(_WINDOW, -1, _WINDOW).transpose(1, 0, 2)
        windows = windows - windows.mean(axis=(1, 2), keepdims=True)
        power += (np.abs(np.fft.fft2(windows * hann)) ** 2).sum(axis=0)
    f = np.fft.fftfreq(_WINDOW)
    radius = np.hypot(f[:, None], f[None, :])
    middle = power[(radius > 0.0625) & (radius <= 0.125)].mean()
    return float(power[radius > 0.25].mean() / middle) if middle > 0 else 0.0


def is_sharp_source(image: np.ndarray, min_ratio: float = MIN_HIGH_FREQUENCY_RATIO) -> bool:
    """True when `image` keeps enough high frequencies to stand for the `sharp` class."""
    return high_frequency_ratio(image) >= min_ratio
