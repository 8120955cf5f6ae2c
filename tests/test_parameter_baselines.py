"""The classical blur-parameter estimators, on the bundled photographs blurred with the project's own PSFs."""
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from blurnet.parameter_baselines import _bessel_j1, estimate_parameters
from data_pipeline.degrade import add_noise, convolve
from data_pipeline.parameters import PARAMETER_TARGETS, angle_degrees
from data_pipeline.psf import defocus_psf, gaussian_psf, motion_psf
from data_pipeline.sources import load_photographs

SIGMAS = (1.5, 2.0, 2.5, 3.0, 3.5)
LENGTHS = (9, 13, 17, 21)
RADII = (3, 4, 5, 6, 7)
# Mean absolute errors measured on the 18 photographs (noise-free): sigma 0.22 px, length 0.17 px, angle 0.43
# degrees, radius 0.06 px; with noise of sigma 2, means (medians): sigma 0.75 (0.31) px, length 1.39 (0.20) px,
# angle 10.2 (0.8) degrees, radius 0.66 (0.10) px. The tolerances leave a margin of about 1.5x.
SIGMA_MAE, LENGTH_MAE, ANGLE_MAE, RADIUS_MAE = 0.3, 0.3, 1.0, 0.15
NOISY_MAE = {"sigma": 1.0, "length": 2.0, "angle": 14.0, "radius": 0.9}
NOISY_MEDIAN = {"sigma": 0.45, "length": 0.35, "angle": 1.5, "radius": 0.2}


@pytest.fixture(scope="module")
def photos():
    """The 18 bundled photographs of at least 200 px, as float32 RGB: 160 px around their centres."""
    out = []
    for photo in load_photographs(None, min_size=200):
        h, w = photo.image.shape[:2]
        out.append(photo.image[h // 2 - 80 : h // 2 + 80, w // 2 - 80 : w // 2 + 80].astype(np.float32))
    return out


def blurred(photos, psf, noise=0.0, seed=0):
    """Each photograph blurred by `psf` (reflected borders), cropped to its central 96 px, noise added."""
    rng = np.random.default_rng(seed)
    crops = [convolve(image, psf)[32:128, 32:128] for image in photos]
    return np.stack([add_noise(crop, noise, rng) for crop in crops])


def angle_error(estimate, truth):
    """Error in degrees between angles of period 180."""
    return np.abs((angle_degrees(estimate[:, 2], estimate[:, 3]) - truth + 90.0) % 180.0 - 90.0)


def sigma_errors(photos, noise=0.0):
    errors = [estimate_parameters(blurred(photos, gaussian_psf(s), noise))[:, 0] - s for s in SIGMAS]
    return np.abs(np.concatenate(errors))


def motion_errors(photos, noise=0.0):
    """Length and angle errors for every length in `LENGTHS`, each photograph at its own random angle."""
    angles = np.random.default_rng(1).uniform(0.0, 180.0, (len(LENGTHS), len(photos)))
    lengths, degrees = [], []
    for length, row in zip(LENGTHS, angles):
        images = [blurred([image], motion_psf(length, angle), noise, seed=i)[0]
                  for i, (image, angle) in enumerate(zip(photos, row))]
        estimate = estimate_parameters(np.stack(images))
        lengths.append(np.abs(estimate[:, 1] - length))
        degrees.append(angle_error(estimate, row))
    return np.concatenate(lengths), np.concatenate(degrees)


def radius_errors(photos, noise=0.0):
    errors = [estimate_parameters(blurred(photos, defocus_psf(r), noise))[:, 4] - r for r in RADII]
    return np.abs(np.concatenate(errors))


def test_columns_shape_and_dtype():
    images = np.random.default_rng(0).uniform(0, 255, (3, 40, 64, 3))
    out = estimate_parameters(images.astype(np.float32))
    assert len(PARAMETER_TARGETS) == 5 and out.shape == (3, 5) and out.dtype == np.float32 and np.isfinite(out).all()
    np.testing.assert_allclose(np.hypot(out[:, 2], out[:, 3]), 1.0, atol=1e-5)  # (cos 2θ, sin 2θ)
    as_bytes = images.astype(np.uint8)
    np.testing.assert_allclose(estimate_parameters(as_bytes), estimate_parameters(as_bytes.astype(np.float32)))
    assert estimate_parameters(np.zeros((0, 96, 96, 3))).shape == (0, 5)
    flat = estimate_parameters(np.full((2, 96, 96, 3), 100.0, np.float32))
    assert np.isfinite(flat).all() and (flat[:, [0, 1, 4]] >= 0).all()


@pytest.mark.parametrize("shape", [(40, 64), (2, 40, 64), (2, 40, 64, 1), (2, 20, 64, 3)])
def test_rejects_other_shapes(shape):
    with pytest.raises(ValueError, match=re.escape(repr(shape))):
        estimate_parameters(np.zeros(shape, np.float32))


def test_motion_psf_orientation():
    """The convention the estimator follows: 0 = horizontal, 90 = vertical, 45 runs bottom-left to top-right."""
    horizontal, vertical, diagonal = motion_psf(9, 0), motion_psf(9, 90), motion_psf(9, 45)
    c = horizontal.shape[0] // 2
    assert horizontal[c].sum() > 0.99 and vertical[:, c].sum() > 0.99
    top_right, top_left = diagonal[:c, c + 1 :].sum(), diagonal[:c, :c].sum()  # rows grow downwards
    assert top_right > 0.35 and top_left == 0.0, (top_right, top_left)


@pytest.mark.parametrize("angle", [0.0, 45.0, 90.0, 135.0])
def test_angle_convention(photos, angle):
    estimate = estimate_parameters(blurred(photos, motion_psf(15, angle)))
    errors = angle_error(estimate, angle)
    assert np.median(errors) < 0.5 and errors.max() < 2.0, errors  # measured: medians <= 0.1, at most 0.33
    assert np.median(np.abs(estimate[:, 1] - 15)) < 0.75  # measured: at most 0.33


def test_sigma_from_the_spectral_fall_off(photos):
    errors = sigma_errors(photos)
    constant = np.mean([abs(s - 2.5) for s in SIGMAS])  # guessing the middle of the range: 0.6 px
    assert errors.mean() < SIGMA_MAE and errors.mean() < 0.5 * constant, errors.mean()


def test_motion_length_and_angle_from_the_cepstrum(photos):
    lengths, degrees = motion_errors(photos)
    assert lengths.mean() < LENGTH_MAE and degrees.mean() < ANGLE_MAE, (lengths.mean(), degrees.mean())
    assert lengths.mean() < 0.25 * np.mean([abs(length - 15) for length in LENGTHS])  # the middle guess: 4 px
    assert degrees.mean() < 0.25 * 45.0  # a random angle is off by 45 degrees on average


def test_defocus_radius_from_the_zero_rings(photos):
    errors = radius_errors(photos)
    constant = np.mean([abs(r - 5) for r in RADII])  # 1.2 px
    assert errors.mean() < RADIUS_MAE and errors.mean() < 0.25 * constant, errors.mean()


def test_with_noise(photos):
    """Gaussian noise of sigma 2 (0..255), inside the training range: most photographs stay close; on a few
    low-texture ones the noise hides the blur, so the means grow (sigma's is then no better than guessing)."""
    length, degrees = motion_errors(photos, 2.0)
    errors = {"sigma": sigma_errors(photos, 2.0), "length": length, "angle": degrees,
              "radius": radius_errors(photos, 2.0)}
    for name, e in errors.items():
        assert e.mean() < NOISY_MAE[name] and np.median(e) < NOISY_MEDIAN[name], (name, e.mean(), np.median(e))


def test_bessel_j1():
    x = np.array([0.0, 1.0, 3.8317059702, 7.0155866698, 10.0])
    expected = [0.0, 0.44005058574, 0.0, 0.0, 0.04347274617]  # tabulated values and the first two zeros
    np.testing.assert_allclose(_bessel_j1(x), expected, atol=1e-9)


def test_no_tensorflow():
    code = "import sys, blurnet.parameter_baselines; assert not {'tensorflow', 'keras'} & set(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])
