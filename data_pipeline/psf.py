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

import cv2
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
    length**2 / 12 within 9 % for length >= 5 (the worst near 45 degrees at 5 to 6 px); across it, at most about 0.2 px**2.
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
    """Mean over each pixel's s x s sub-pixels of `inside` (a 0/1 mask: the fraction inside the shape; weights:
    their area-weighted mean)."""
    return inside.reshape(size, s, size, s).mean(axis=(1, 3))


def defocus_psf(radius: float) -> np.ndarray:
    """Uniform disk (out-of-focus blur) with an anti-aliased edge.

    Each pixel's weight is the fraction of its area inside the circle of the
    given radius, estimated on a 16x16 sub-pixel grid. Because the result is the
    ideal disk integrated over square pixels, its mean squared radius is
    R**2 / 2 plus the pixel's own 1/6 px**2 (within 0.05 px of radius from R = 2 up).
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


# --------------------------------------------------------------------------- camera shake

#: A trajectory is `motion` only when its energy spreads at least this far: the
#: equivalent streak length sqrt(12 * largest second moment) in px (a straight
#: streak of length L has exactly L). Below `SHAKE_SHARP_MAX_SPREAD` a shake is
#: labelled `sharp`; the gap between the two is never generated, so no label
#: sits on the boundary.
SHAKE_MOTION_MIN_SPREAD = 4.0
SHAKE_SHARP_MAX_SPREAD = 1.5
#: The most isotropic a `motion` trajectory may be (`psf_isotropy`: smallest over largest second-moment eigenvalue;
#: a streak is near 0, a disk 1): a loop whose energy spreads about as far every way is a blob that reads as
#: defocus, and its angle means nothing. The four recorded camera shakes of the check set measure 0.04 to 0.42.
SHAKE_MAX_ISOTROPY = 0.5
_SHAKE_STEPS = 256
_SHAKE_DIRECTIONS = np.stack(
    [np.cos(np.linspace(0, np.pi, 32, endpoint=False)), np.sin(np.linspace(0, np.pi, 32, endpoint=False))]
)


def shake_trajectory(rng: np.random.Generator, steps: int = _SHAKE_STEPS) -> tuple[np.ndarray, np.ndarray]:
    """A random camera-shake path: points `(steps, 2)` (x right, y down) and their dwell weights `(steps,)`.

    Follows the model of Boracchi & Foi (IEEE TIP 2012): the velocity has
    inertia, random Gaussian pushes, a pull back towards the start
    (centripetal term) and, now and then, an abrupt jerk that turns it
    around. Speed is uneven: a random-walk speed profile makes the camera
    dwell, so each point weighs in proportion to the time spent there (1 /
    speed). The path has arbitrary units; `shake_psf` scales it.
    """
    anxiety = rng.uniform(0.005, 0.1)
    gaussian_term = rng.uniform(0.0, 10.0)
    centripetal = rng.uniform(0.0, 0.7)
    jerk_rate = rng.uniform(0.0, 0.2)
    step = 1.0 / (steps - 1)
    v = np.exp(1j * rng.uniform(0.0, 2.0 * np.pi)) * step
    x = np.zeros(steps, np.complex128)
    pushes = rng.standard_normal(steps) + 1j * rng.standard_normal(steps)
    jerks = rng.random(steps) < jerk_rate * anxiety
    turns = np.exp(1j * (np.pi + rng.random(steps) - 0.5))
    for t in range(steps - 1):
        dv = anxiety * (gaussian_term * pushes[t] - centripetal * x[t]) * step
        if jerks[t]:
            dv += 2.0 * v * turns[t]
        v = v + dv
        v = v / (abs(v) + 1e-12) * step
        x[t + 1] = x[t] + v
    # Uneven speed: log-speed is a scaled random walk; dwell time = 1 / speed.
    log_speed = np.cumsum(rng.standard_normal(steps)) * rng.uniform(0.0, 0.25)
    dwell = np.exp(-(log_speed - log_speed.mean()))
    return np.stack([x.real, x.imag], axis=1), dwell / dwell.sum()


def trajectory_extent(points: np.ndarray) -> float:
    """Largest distance between two points of a path (within 0.5 %: projections on 32 directions)."""
    projections = np.asarray(points, np.float64) @ _SHAKE_DIRECTIONS
    return float((projections.max(axis=0) - projections.min(axis=0)).max())


def _splat(points: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Bilinear splatting of weighted points (centred on their weighted mean) onto an odd grid.

    Bilinear splatting keeps each point's weighted position exactly, so the
    PSF's centroid is the middle pixel to float precision.
    """
    points = points - (weights[:, None] * points).sum(axis=0) / weights.sum()
    half = int(np.ceil(np.abs(points).max())) + 1
    size = 2 * half + 1
    grid = np.zeros((size, size), np.float64)
    coords = points + half
    base = np.floor(coords).astype(np.int64)
    frac = coords - base
    for dx, dy in ((0, 0), (1, 0), (0, 1), (1, 1)):
        wx = frac[:, 0] if dx else 1.0 - frac[:, 0]
        wy = frac[:, 1] if dy else 1.0 - frac[:, 1]
        np.add.at(grid, (base[:, 1] + dy, base[:, 0] + dx), weights * wx * wy)
    return _normalise(grid)


def shake_psf(extent: float, rng: np.random.Generator) -> np.ndarray:
    """Camera-shake PSF: a random trajectory (`shake_trajectory`) scaled to `extent` px.

    `extent` is the largest distance between two points of the path (a
    straight streak's length). Rasterised by bilinear splatting of 256 points
    (sub-pixel accurate), non-negative, sums to 1, odd size, centred on its
    centroid. Use `motion_spread` for how far its energy reaches.
    """
    extent = _check_positive("extent", extent, 0.0)
    points, weights = shake_trajectory(rng)
    span = trajectory_extent(points)
    points = points * (extent / span if span > 0 else 0.0)
    return _splat(points, weights)


def _second_moments(kernel: np.ndarray) -> np.ndarray:
    """The 2 x 2 second-moment (covariance) matrix of a PSF's energy about its centroid, x then y."""
    m = psf_moments(kernel)
    return np.array([[m["var_x"], m["cov_xy"]], [m["cov_xy"], m["var_y"]]])


def motion_spread(kernel: np.ndarray) -> tuple[float, float]:
    """How far a PSF's energy spreads, and along which direction.

    Returns `(spread, angle)`: `spread = sqrt(12 * largest eigenvalue of the
    second-moment matrix)` in px, equal to L for a straight streak of length L,
    and the angle of that principal axis in degrees (0..180, counter-clockwise
    on screen).
    """
    values, vectors = np.linalg.eigh(_second_moments(kernel))
    vx, vy = vectors[:, 1]
    angle = math.degrees(math.atan2(-vy, vx)) % 180.0  # y grows downwards on screen
    return math.sqrt(12.0 * max(values[1], 0.0)), angle


def disk_equivalent_radius(kernel: np.ndarray) -> float:
    """The radius in px of the uniform disk with the same mean squared radius as the PSF: `sqrt(2 (mean r^2 - 1/6))`.

    Equal to R within 0.05 px for `defocus_psf(R)` with R >= 2 (whose mean r^2 is then R^2 / 2 plus the pixel's own
    1/6 px^2; a smaller disk is coarser than its pixels: R = 1.5 reads 1.41, R = 1 reads 1.12), as `motion_spread`
    is L for a streak. For a real-lens aperture it is the size the blur shows, not the size it was drawn at:
    a 5-blade iris of circumradius R reads as 0.88 R, a brighter rim as up to 1.13 R, a softened edge larger.
    Second moments set a transfer function's fall-off at low frequencies (1 - 2 pi^2 f^2 var), which is what
    the spectrum of a blurred photograph shows first.
    """
    return math.sqrt(2.0 * max(psf_moments(kernel)["mean_r2"] - 1.0 / 6.0, 0.0))


def psf_isotropy(kernel: np.ndarray) -> float:
    """Isotropy of a PSF: smallest over largest second-moment eigenvalue (0 for a line, 1 for a disk)."""
    values = np.linalg.eigvalsh(_second_moments(kernel))
    return float(max(values[0], 0.0) / max(values[1], 1e-12))


# --------------------------------------------------------------------------- real lenses

_LENS_SUPERSAMPLING = 8


def _check_softness(sigma: float) -> float:
    sigma = float(sigma)
    if not 0.0 <= sigma <= 3.0:
        raise ValueError(f"softness must be in [0, 3] px, got {sigma!r}.")
    return sigma


def soften(kernel: np.ndarray, sigma: float, pad: int | None = None) -> np.ndarray:
    """`kernel` convolved with a Gaussian of `sigma` px (0 to 3; 0 leaves it as it is), normalised to sum 1.

    It is first padded with `pad` zeros on each side (default `ceil(3 sigma)`: what spreads further, a fraction of a
    percent, is cut off; the sides stay odd and the centroid stays where it was). This is the blur every real optical system adds to the
    path of a shake or the edge of an aperture: the light of one scene point never lands on a single pixel.
    """
    sigma = _check_softness(sigma)
    kernel = np.asarray(kernel, np.float64)
    if sigma == 0:
        return _normalise(kernel)
    pad = math.ceil(3.0 * sigma) if pad is None else int(pad)
    kernel = np.pad(kernel, pad)
    return _normalise(cv2.GaussianBlur(kernel, (0, 0), sigma, borderType=cv2.BORDER_CONSTANT))


def lens_psf(radius: float, blades: int = 0, rotation: float = 0.0, rim: float = 0.0, softness: float = 0.0) -> np.ndarray:
    """Defocus through a real lens: a disk or a regular polygonal iris, with a radial brightness profile.

    `radius`: the aperture's circumradius in px (a polygon's corners touch the
    circle of that radius). `blades`: 0 for a round aperture, else 3 to 16 (a
    polygon with that many sides), turned by `rotation` degrees. `rim` in
    [-0.9, 0.9]: brightness `1 + rim * (2 (r/R)^2 - 1)`, so positive values
    brighten the rim (over-corrected spherical aberration, "soap-bubble"
    bokeh) and negative ones the centre. `softness`: sigma in px of a Gaussian
    that softens the edge (0 = sharp edge). Area-sampled on an 8 x 8
    sub-pixel grid; non-negative, sums to 1, odd size, centred (an odd-bladed
    iris's centroid, off the middle by its sampling alone, within 0.06 px from a
    radius of 2 px up: 0.052 for radius 3, 5 blades, rim 0.8).
    """
    radius = _check_positive("radius", radius, 0.5)
    if not math.isfinite(float(rotation)):
        raise ValueError(f"rotation must be a finite number of degrees, got {rotation!r}.")
    if blades != 0 and not 3 <= int(blades) <= 16:
        raise ValueError(f"blades must be 0 (round) or 3..16, got {blades!r}.")
    if not -0.9 <= float(rim) <= 0.9:
        raise ValueError(f"rim must be in [-0.9, 0.9], got {rim!r}.")
    half = math.ceil(radius + 0.5) + math.ceil(3.0 * _check_softness(softness))  # room for the softened edge
    x, y = _subpixel_grid(half, _LENS_SUPERSAMPLING)
    r2 = x**2 + y**2
    if blades:
        n = int(blades)
        normals = math.radians(rotation) + (2 * np.arange(n) + 1) * math.pi / n
        reach = np.max([x * math.cos(a) - y * math.sin(a) for a in normals], axis=0)
        inside = reach <= radius * math.cos(math.pi / n)
    else:
        inside = r2 <= radius**2
    weight = inside * (1.0 + rim * (2.0 * r2 / radius**2 - 1.0))
    size = 2 * half + 1
    return soften(_pixel_coverage(weight, size, _LENS_SUPERSAMPLING), softness, pad=0)
