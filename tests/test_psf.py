import math

import numpy as np
import pytest

from data_pipeline.psf import (
    defocus_psf,
    directional_variance,
    gaussian_psf,
    identity_psf,
    motion_psf,
    psf_moments,
)

ALL = [gaussian_psf(1.0), gaussian_psf(3.5), motion_psf(5, 0), motion_psf(13.7, 33), motion_psf(21, 171),
       defocus_psf(2.0), defocus_psf(4.3), defocus_psf(7.0), identity_psf()]


@pytest.mark.parametrize("k", ALL)
def test_every_psf_is_normalised_odd_and_centred(k):
    assert k.dtype == np.float32
    assert k.min() >= 0
    assert k.sum() == pytest.approx(1.0, abs=1e-5)
    assert k.shape[0] % 2 == 1 and k.shape[1] % 2 == 1
    m = psf_moments(k)
    assert abs(m["mean_x"]) < 1e-5 and abs(m["mean_y"]) < 1e-5


@pytest.mark.parametrize("sigma", [1.0, 1.7, 2.5, 3.5])
def test_gaussian_variance_is_sigma_squared(sigma):
    m = psf_moments(gaussian_psf(sigma))
    assert m["var_x"] == pytest.approx(sigma**2, rel=0.05)
    assert m["var_y"] == pytest.approx(sigma**2, rel=0.05)
    assert abs(m["cov_xy"]) < 1e-6


@pytest.mark.parametrize("radius", [2.5, 3.0, 4.5, 7.0])
def test_disk_mean_r2_is_half_radius_squared(radius):
    assert psf_moments(defocus_psf(radius))["mean_r2"] == pytest.approx(radius**2 / 2, rel=0.05)


@pytest.mark.parametrize("radius", [2.0, 2.2, 5.0])
def test_disk_mean_r2_including_the_pixel_area(radius):
    # Area-sampled disk = ideal disk convolved with the unit pixel: + 2 * 1/12 px^2.
    assert psf_moments(defocus_psf(radius))["mean_r2"] == pytest.approx(radius**2 / 2 + 1 / 6, rel=0.05)


def test_disk_is_flat_inside_and_zero_outside():
    k = defocus_psf(5.0)
    c = k.shape[0] // 2
    assert k[c, c] == pytest.approx(k[c, c + 3])
    assert k[0, 0] == 0.0
    assert 0 < k[c, c + 5] < k[c, c]  # the anti-aliased edge


@pytest.mark.parametrize("length", [5.0, 8.5, 15.0, 21.0])
@pytest.mark.parametrize("angle", [0.0, 30.0, 45.0, 90.0, 120.0, 179.0])
def test_motion_variance_along_and_across(length, angle):
    along, across = directional_variance(motion_psf(length, angle), angle)
    assert along == pytest.approx(length**2 / 12, rel=0.10)
    assert across < 0.25


def test_motion_orientation():
    m0 = psf_moments(motion_psf(11, 0))
    assert m0["var_y"] == pytest.approx(0.0, abs=1e-9) and m0["var_x"] > 9
    m90 = psf_moments(motion_psf(11, 90))
    assert m90["var_x"] == pytest.approx(0.0, abs=1e-9) and m90["var_y"] > 9
    # 45 degrees runs bottom-left to top-right: x up means row index down.
    m45 = psf_moments(motion_psf(11, 45))
    assert m45["cov_xy"] < -4
    assert m45["var_x"] == pytest.approx(m45["var_y"], rel=1e-6)
    k45 = motion_psf(11, 45)
    c = k45.shape[0] // 2
    assert k45[c - 3, c + 3] > 0 and k45[c - 3, c - 3] == 0


def test_motion_angle_is_modulo_180():
    np.testing.assert_allclose(motion_psf(9, 20), motion_psf(9, 200), atol=1e-7)


@pytest.mark.parametrize(
    "make, bad",
    [(gaussian_psf, 0.0), (gaussian_psf, -1.0), (gaussian_psf, math.nan), (defocus_psf, 0.1), (lambda v: motion_psf(v, 0), 0.5)],
)
def test_bad_parameters_raise_with_the_value(make, bad):
    with pytest.raises(ValueError, match=repr(float(bad)).replace("(", r"\(")):
        make(bad)


def test_motion_bad_angle():
    with pytest.raises(ValueError, match="inf"):
        motion_psf(5, math.inf)
