"""The classical blur-parameter estimators, on bundled photographs blurred with the project's own PSFs."""
import numpy as np
import pytest

from blurnet.parameter_baselines import estimate_parameters
from data_pipeline.degrade import convolve
from data_pipeline.parameters import angle_degrees
from data_pipeline.psf import defocus_psf, gaussian_psf, motion_psf
from data_pipeline.sources import load_photographs


@pytest.fixture(scope="module")
def photos():
    return [p.image.astype(np.float32) for p in load_photographs(None, min_size=200)][:8]


def crops(photos, psf, side=96):
    out = []
    for image in photos:
        blurred = convolve(image, psf)
        h, w = blurred.shape[:2]
        out.append(blurred[h // 2 - side // 2 : h // 2 + side // 2, w // 2 - side // 2 : w // 2 + side // 2])
    return np.stack(out)


def test_sigma_from_the_spectral_fall_off(photos):
    errors = [np.abs(estimate_parameters(crops(photos, gaussian_psf(s)))[:, 0] - s) for s in (1.5, 2.5, 3.5)]
    median_error = float(np.median(np.concatenate(errors)))
    assert median_error < 0.35, median_error  # a few photographs are far off, most within a few tenths
    assert median_error < 0.5 * 1.0  # guessing the middle, 2.5, is off by a median 1.0 px on these sigmas


def test_motion_length_and_angle_from_the_cepstrum(photos):
    lengths, angles = [], []
    for length, angle in ((9, 0), (15, 90), (21, 45), (13, 120)):
        estimate = estimate_parameters(crops(photos, motion_psf(length, angle)))
        lengths.append(np.abs(estimate[:, 1] - length))
        difference = np.abs(angle_degrees(estimate[:, 2], estimate[:, 3]) - angle)
        angles.append(np.minimum(difference, 180 - difference))
        assert np.median(difference.clip(max=180 - difference)) < 3  # the convention: 0 horizontal, 90 vertical, counter-clockwise
    assert float(np.median(np.concatenate(lengths))) < 1.0  # measured 0.0 to 0.5 px
    assert float(np.mean(np.concatenate(lengths))) < 2.5
    assert float(np.median(np.concatenate(angles))) < 3.0


def test_defocus_radius_from_the_cepstral_ring(photos):
    errors = [np.abs(estimate_parameters(crops(photos, defocus_psf(r)))[:, 4] - r) for r in (3, 5, 7)]
    assert float(np.median(np.concatenate(errors))) <= 0.5  # the ring is found to the pixel: radius to half a pixel


def test_shape_and_bad_input():
    out = estimate_parameters(np.random.default_rng(0).uniform(0, 255, (3, 40, 64, 3)).astype(np.float32))
    assert out.shape == (3, 5) and out.dtype == np.float32 and np.isfinite(out).all()
    np.testing.assert_allclose(np.hypot(out[:, 2], out[:, 3]), 1.0, atol=1e-5)
    with pytest.raises(ValueError, match=r"\(40, 64\)"):
        estimate_parameters(np.zeros((40, 64)))
