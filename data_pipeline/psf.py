"""Point-spread functions (PSFs) in numpy.

Every PSF returned here is a float32 2-D array that is non-negative, sums to 1,
has odd height and width, and is centred: its first moments about the middle
pixel are zero.

Coordinates: `x` grows to the right (columns), `y` grows downwards (rows), as in
image arrays. Motion angles are in degrees, counter-clockwise as seen on screen,
with 0 = horizontal and 90 = vertical; a 45-degree streak runs from bottom-left
to top-right. Angles are taken modulo 180 (a streak has no direction).
"""
from __future__ import annotations

import math

import numpy as np

_DISK_SUPERSAMPLING = 16
_MOTION_SUPERSAMPLING = 8


def _check_positive(name: str, value: float, minimum: float) -> float:
    value = float(value)
    if not math.isfinite(value) or value < minimum:
        raise ValueError(f"{name} must be a finite number >= {minimum}, got {value!r}.")
    return value


def _normalise(kernel: np.ndarray) -> np.ndarray:
    kernel = np.clip(kernel, 0.0, None)
    return (kernel / kernel.sum()).astype(np.float32)


def identity_psf() -> np.ndarray:
    """The 1x1 PSF of a sharp image."""
    return np.ones((1, 1), np.float32)


def gaussian_psf(sigma: float) -> np.ndarray:
    """Isotropic Gaussian sampled at pixel centres, truncated at 3.5 sigma.

    Size is `2 * ceil(3.5 * sigma) + 1`. The discrete variance along each axis is
    sigma**2 to within a fraction of a percent for sigma >= 1.
    """
    sigma = _check_positive("sigma", sigma, 0.1)
    half = max(1, math.ceil(3.5 * sigma))
    coords = np.arange(-half, half + 1, dtype=np.float64)
    profile = np.exp(-0.5 * (coords / sigma) ** 2)
    return _normalise(np.outer(profile, profile))


def motion_psf(length: float, angle: float) -> np.ndarray:
    """Linear motion blur: a straight streak of `length` pixels through the centre.

    Anti-aliased by area sampling: the streak is a `length` x 1 px rectangle and
    each pixel's weight is the fraction of its area inside it (8x8 sub-pixel
    grid). Works for any real length >= 1 and any angle (degrees, 0 =
    horizontal, counter-clockwise on screen). The variance along the streak is
    length**2 / 12 within 6 % for length >= 5; across it, at most about 0.2 px**2.
    """
    length = _check_positive("length", length, 1.0)
    angle = float(angle)
    if not math.isfinite(angle):
        raise ValueError(f"angle must be a finite number of degrees, got {angle!r}.")
    theta = math.radians(angle % 180.0)
    half = math.ceil(length / 2.0) + 1
    size = 2 * half + 1
    x, y = _subpixel_grid(half, _MOTION_SUPERSAMPLING)
    # Rotate into streak coordinates: u along the streak, v across it (y is down).
    u = x * math.cos(theta) - y * math.sin(theta)
    v = x * math.sin(theta) + y * math.cos(theta)
    inside = (np.abs(u) <= length / 2.0) & (np.abs(v) <= 0.5)
    return _normalise(_pixel_coverage(inside, size, _MOTION_SUPERSAMPLING))


def _subpixel_grid(half: int, s: int) -> tuple[np.ndarray, np.ndarray]:
    """x (row vector) and y (column vector) of the centres of s x s sub-pixels."""
    offsets = (np.arange(s, dtype=np.float64) + 0.5) / s - 0.5
    sub = (np.arange(-half, half + 1, dtype=np.float64)[:, None] + offsets[None, :]).ravel()
    return sub[None, :], sub[:, None]


def _pixel_coverage(inside: np.ndarray, size: int, s: int) -> np.ndarray:
    """Fraction of each pixel's sub-pixels that are inside the shape."""
    return inside.reshape(size, s, size, s).mean(axis=(1, 3))


def defocus_psf(radius: float) -> np.ndarray:
    """Uniform disk (out-of-focus blur) with an anti-aliased edge.

    Each pixel's weight is the fraction of its area inside the circle of the
    given radius, estimated on a 16x16 sub-pixel grid. Because the result is the
    ideal disk integrated over square pixels, its mean squared radius is
    R**2 / 2 plus the pixel's own 1/6 px**2.
    """
    radius = _check_positive("radius", radius, 0.5)
    half = math.ceil(radius + 0.5)
    x, y = _subpixel_grid(half, _DISK_SUPERSAMPLING)
    inside = (x**2 + y**2) <= radius**2
    return _normalise(_pixel_coverage(inside, 2 * half + 1, _DISK_SUPERSAMPLING))


def psf_moments(kernel: np.ndarray) -> dict:
    """First and second moments of a PSF about its middle pixel.

    Returns `mean_x`, `mean_y`, `var_x`, `var_y`, `cov_xy` and `mean_r2`, with x to
    the right and y downwards. Handy for tests and for checking user PSFs.
    """
    kernel = np.asarray(kernel, np.float64)
    h, w = kernel.shape
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    x -= (w - 1) / 2.0
    y -= (h - 1) / 2.0
    total = kernel.sum()
    mx = (kernel * x).sum() / total
    my = (kernel * y).sum() / total
    vx = (kernel * (x - mx) ** 2).sum() / total
    vy = (kernel * (y - my) ** 2).sum() / total
    cxy = (kernel * (x - mx) * (y - my)).sum() / total
    return {"mean_x": mx, "mean_y": my, "var_x": vx, "var_y": vy, "cov_xy": cxy, "mean_r2": vx + vy}


def directional_variance(kernel: np.ndarray, angle: float) -> tuple[float, float]:
    """Variance of a PSF along and across a direction (degrees, convention above)."""
    m = psf_moments(kernel)
    theta = math.radians(angle)
    ux, uy = math.cos(theta), -math.sin(theta)
    along = m["var_x"] * ux * ux + m["var_y"] * uy * uy + 2 * m["cov_xy"] * ux * uy
    across = m["mean_r2"] - along
    return along, across
