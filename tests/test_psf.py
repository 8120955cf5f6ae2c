import dataclasses
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
    soften,
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


# ---- camera shake -----------------------------------------------------------------------------

from data_pipeline.psf import (  # noqa: E402
    SHAKE_MOTION_MIN_SPREAD,
    disk_equivalent_radius,
    lens_psf,
    motion_spread,
    psf_isotropy,
    shake_psf,
    shake_trajectory,
    trajectory_extent,
)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("extent", [5.0, 12.0, 21.0])
def test_shake_psf_is_a_centred_normalised_odd_kernel_of_the_requested_extent(seed, extent):
    k = shake_psf(extent, np.random.default_rng(seed))
    assert k.dtype == np.float32 and k.min() >= 0 and k.sum() == pytest.approx(1.0, abs=1e-5)
    assert k.shape[0] % 2 == 1 and k.shape[0] == k.shape[1]
    m = psf_moments(k)
    assert abs(m["mean_x"]) < 1e-4 and abs(m["mean_y"]) < 1e-4  # centred on its centroid
    # Support: the farthest two non-zero pixels are at most the extent plus the bilinear footprint apart.
    ys, xs = np.nonzero(k > 1e-7)
    pts = np.stack([xs, ys], 1).astype(float)
    span = trajectory_extent(pts)
    assert extent - 0.5 <= span <= extent + 2 * math.sqrt(2) + 0.01  # one pixel of footprint at each end


def test_shake_trajectory_extent_is_scaled_exactly():
    points, weights = shake_trajectory(np.random.default_rng(3))
    assert points.shape == (256, 2) and weights.shape == (256,) and weights.sum() == pytest.approx(1.0)
    assert weights.max() / weights.min() > 1.05  # uneven speed: the camera dwells
    # 32 projection directions measure the diameter within 0.5 %.
    brute = max(np.hypot(*(points[i] - points[j])) for i in range(0, 256, 3) for j in range(0, 256, 3))
    assert brute * 0.995 <= trajectory_extent(points) * 1.005


def test_a_trajectory_is_told_from_a_line_by_its_isotropy():
    line = [psf_isotropy(motion_psf(15.0, a)) for a in (0, 30, 77)]
    shakes = [psf_isotropy(shake_psf(15.0, np.random.default_rng(s))) for s in range(40)]
    assert max(line) < 0.01
    assert np.median(shakes) > 0.05 and np.mean(np.array(shakes) > 0.02) > 0.8


@pytest.mark.parametrize("angle", [0.0, 30.0, 90.0, 135.0])
def test_motion_spread_of_a_streak_is_its_length_and_angle(angle):
    spread, direction = motion_spread(motion_psf(15.0, angle))
    assert spread == pytest.approx(15.0, rel=0.03)
    assert min(abs(direction - angle), 180 - abs(direction - angle)) < 1.0


def test_sampled_shakes_respect_the_motion_and_sharp_boundaries():
    from data_pipeline.degrade import PsfFamilies, make_psf, sample_blur

    rng = np.random.default_rng(0)
    families = PsfFamilies(shake_fraction=1.0, sharp_shake_fraction=1.0)
    motion = [sample_blur(rng, "motion", families=families) for _ in range(60)]
    sharp = [sample_blur(rng, "sharp", families=families) for _ in range(60)]
    assert sum(p.family == "shake" for p, _ in motion) >= 58
    assert all(motion_spread(k)[0] >= SHAKE_MOTION_MIN_SPREAD for p, k in motion if p.family == "shake")
    # and longer than wide, before any softening: a loop that spreads about as far every way is no streak
    unsoftened = [psf_isotropy(make_psf(dataclasses.replace(p, softness=0.0))) for p, _ in motion if p.family == "shake"]
    assert max(unsoftened) <= 0.5 and np.median(unsoftened) < 0.3
    assert all(5.0 <= p.strength <= 21.0 for p, _ in motion if p.family != "shake")
    # a trajectory's length is its energy spread (what the photograph shows), drawn at an extent in the range
    shakes = [(p, k) for p, k in motion if p.family == "shake"]
    assert all(p.strength == pytest.approx(motion_spread(make_psf(dataclasses.replace(p, softness=0.0)))[0])
               and 5.0 <= p.extent <= 21.0 for p, k in shakes)
    assert np.mean([p.strength < p.extent for p, _ in shakes]) > 0.5  # a trajectory spreads less than its extent
    assert sum(p.family == "shake" for p, _ in sharp) >= 50
    assert all(motion_spread(k)[0] <= 1.5 for p, k in sharp)
    # The recorded angle is the principal axis, and make_psf rebuilds the same kernel from the params.
    for p, k in motion[:10] + sharp[:10]:
        np.testing.assert_array_equal(make_psf(p), k)
        if p.label == 2:
            assert p.angle == pytest.approx(motion_spread(k)[1], abs=0.5 if p.softness else 1e-6)


def test_soften_spreads_a_kernel_by_its_gaussian_and_keeps_it_centred():
    streak = motion_psf(9.0, 20.0)
    assert soften(streak, 0.0).shape == streak.shape and np.allclose(soften(streak, 0.0), streak)
    soft = soften(streak, 1.0)
    assert soft.shape == (streak.shape[0] + 6, streak.shape[1] + 6) and soft.sum() == pytest.approx(1.0, abs=1e-6)
    before, after = psf_moments(streak), psf_moments(soft)
    assert after["var_x"] == pytest.approx(before["var_x"] + 1.0, abs=0.01)  # sigma 1 adds 1 px^2 along each axis
    assert after["var_y"] == pytest.approx(before["var_y"] + 1.0, abs=0.01)
    assert abs(after["mean_x"]) < 1e-6 and abs(after["mean_y"]) < 1e-6
    assert soften(streak, 1.0, pad=1).shape == (streak.shape[0] + 2, streak.shape[1] + 2)
    with pytest.raises(ValueError, match=r"softness must be in \[0, 3\] px, got 3.5"):
        soften(streak, 3.5)


def test_motion_softness_softens_half_the_motion_samples_by_its_sigma():
    from data_pipeline.classes import BlurRanges
    from data_pipeline.degrade import MOTION_SOFTNESS_SIGMA, PsfFamilies, _sample_path, make_psf, sample_blur

    rng = np.random.default_rng(3)
    motion = [sample_blur(rng, "motion") for _ in range(400)]  # the default (realistic) families
    softened = [(p, k) for p, k in motion if p.softness > 0]
    assert abs(len(softened) / 400 - 0.5) < 4 * (0.25 / 400) ** 0.5
    sigmas = np.array([p.softness for p, _ in softened])
    assert MOTION_SOFTNESS_SIGMA[0] <= sigmas.min() and sigmas.max() <= MOTION_SOFTNESS_SIGMA[1]
    assert sigmas.mean() == pytest.approx(np.mean(MOTION_SOFTNESS_SIGMA), abs=0.05)  # uniform
    assert {p.family for p, _ in softened} == {"", "shake"}  # streaks and trajectories alike
    for p, k in softened[:20]:
        path = make_psf(dataclasses.replace(p, softness=0.0))
        blur = psf_moments(soften(np.pad(identity_psf(), 4), p.softness))["var_x"]  # the sampled Gaussian's variance
        assert blur == pytest.approx(p.softness**2, rel=0.15)
        # Variances add: along the path by the Gaussian's, so the spread is sqrt(spread^2 + 12 var) ...
        assert motion_spread(k)[0] == pytest.approx(np.hypot(motion_spread(path)[0], np.sqrt(12 * blur)), rel=1e-4)
        # ... and across it too: a streak's width grows from about 0.3 px to about sigma.
        assert psf_moments(k)["mean_r2"] == pytest.approx(psf_moments(path)["mean_r2"] + 2 * blur, rel=1e-4)
        assert k.sum() == pytest.approx(1.0, abs=1e-5) and k.shape[0] % 2 == 1 and k.shape[1] % 2 == 1
        assert abs(psf_moments(k)["mean_x"]) < 0.05 and abs(psf_moments(k)["mean_y"]) < 0.05  # still centred
        np.testing.assert_array_equal(make_psf(p), k)
    # Without it nothing more is drawn: the classic stream is the one it always was.
    assert all(p.softness == 0 for p, _ in (sample_blur(rng, "motion", families=PsfFamilies.classic()) for _ in range(50)))
    classic, plain = np.random.default_rng(5), np.random.default_rng(5)
    for _ in range(5):  # a classic streak draws what it drew before softening existed, and nothing more
        assert sample_blur(classic, "motion", families=PsfFamilies.classic())[0] == _sample_path(plain, "motion", BlurRanges(), PsfFamilies.classic())[0]
    assert classic.random() == plain.random()


# ---- real lenses ------------------------------------------------------------------------------


@pytest.mark.parametrize("radius", [2.0, 4.5, 7.0])
@pytest.mark.parametrize("blades", [0, 5, 6, 9])
def test_lens_psf_support_and_moments(radius, blades):
    k = lens_psf(radius, blades=blades, rotation=17.0)
    assert k.min() >= 0 and k.sum() == pytest.approx(1.0, abs=1e-5) and k.shape[0] % 2 == 1
    m = psf_moments(k)
    assert abs(m["mean_x"]) < 0.02 and abs(m["mean_y"]) < 0.02
    ys, xs = np.nonzero(k > 0)
    c = k.shape[0] // 2
    reach = np.hypot(xs - c, ys - c).max()
    assert radius - 1.0 <= reach <= radius + 0.75  # support radius: the circumradius, to a pixel
    # A uniform n-gon of circumradius R has mean r^2 = R^2 (2 + cos(2 pi / n)) / 6 (R^2 / 2 for the circle).
    expected = radius**2 / 2 if blades == 0 else radius**2 * (2 + np.cos(2 * np.pi / blades)) / 6
    assert m["mean_r2"] == pytest.approx(expected + 1 / 6, rel=0.06)


def test_rim_and_centre_brightening_move_the_energy():
    plain, rim, centre = (psf_moments(lens_psf(6.0, rim=r))["mean_r2"] for r in (0.0, 0.8, -0.8))
    # Weight 1 + a (2 r^2/R^2 - 1) on a disk: mean r^2 = R^2 (1/2 + a/6).
    assert rim == pytest.approx(36 * (0.5 + 0.8 / 6) + 1 / 6, rel=0.03)
    assert centre == pytest.approx(36 * (0.5 - 0.8 / 6) + 1 / 6, rel=0.03)
    assert centre < plain < rim


def test_soft_edge_adds_the_gaussian_variance():
    sharp, soft = lens_psf(5.0), lens_psf(5.0, softness=0.6)
    assert psf_moments(soft)["mean_r2"] == pytest.approx(psf_moments(sharp)["mean_r2"] + 2 * 0.36, rel=0.02)
    assert soft.shape[0] > sharp.shape[0]


@pytest.mark.parametrize("radius", [2.0, 3.3, 4.5, 7.0])
def test_disk_equivalent_radius_of_a_uniform_disk_is_its_radius(radius):
    # to within 0.05 px: the pixel grid shifts a small disk's second moments a little
    assert disk_equivalent_radius(defocus_psf(radius)) == pytest.approx(radius, abs=0.05)
    assert disk_equivalent_radius(lens_psf(radius)) == pytest.approx(radius, abs=0.05)


def test_disk_equivalent_radius_of_real_lenses_is_the_size_they_show():
    # n-gon of circumradius R: sqrt(2 * R^2 (2 + cos(2 pi / n)) / 6) = 0.877 R for 5 blades, 0.960 R for 9.
    assert disk_equivalent_radius(lens_psf(6.0, blades=5, rotation=10.0)) == pytest.approx(6.0 * 0.877, abs=0.05)
    assert disk_equivalent_radius(lens_psf(6.0, blades=9)) == pytest.approx(6.0 * 0.960, abs=0.05)
    # Brighter rim / centre: R sqrt(1 + a / 3); a soft edge of sigma s: sqrt(R^2 + 4 s^2).
    assert disk_equivalent_radius(lens_psf(6.0, rim=0.8)) == pytest.approx(6.0 * np.sqrt(1 + 0.8 / 3), abs=0.05)
    assert disk_equivalent_radius(lens_psf(6.0, rim=-0.8)) == pytest.approx(6.0 * np.sqrt(1 - 0.8 / 3), abs=0.05)
    assert disk_equivalent_radius(lens_psf(4.0, softness=0.6)) == pytest.approx(np.sqrt(16 + 4 * 0.36), abs=0.05)


def test_sampled_lenses_carry_their_disk_equivalent_radius():
    from data_pipeline.degrade import PsfFamilies, make_psf, sample_blur

    rng = np.random.default_rng(3)
    drawn = [sample_blur(rng, "defocus", families=PsfFamilies(lens_fraction=1.0)) for _ in range(40)]
    assert all(p.family == "lens" and 2.0 <= p.extent <= 7.0 for p, _ in drawn)
    assert all(p.strength == pytest.approx(disk_equivalent_radius(k)) for p, k in drawn)
    assert sum(abs(p.strength - p.extent) > 0.1 for p, _ in drawn) >= 20  # most lenses differ from their disk
    for p, k in drawn[:10]:
        np.testing.assert_array_equal(make_psf(p), k)  # make_psf rebuilds the kernel from the circumradius


def test_lens_psf_rejects_bad_settings():
    with pytest.raises(ValueError, match="blades"):
        lens_psf(4.0, blades=2)
    with pytest.raises(ValueError, match="1.5"):
        lens_psf(4.0, rim=1.5)
    with pytest.raises(ValueError, match="radius"):
        lens_psf(0.1)
    with pytest.raises(ValueError, match="rotation .* got nan"):
        lens_psf(3.0, blades=5, rotation=float("nan"))


def test_every_lens_in_the_sampled_ranges_is_centred_within_the_stated_tolerance():
    worst = 0.0
    for radius in np.arange(2.0, 7.01, 0.5):
        for blades in (0, 5, 6, 7, 9):
            for rim in (-0.8, 0.0, 0.8):
                for rotation in (0.0, 17.0, 45.0):
                    m = psf_moments(lens_psf(radius, blades, rotation, rim))
                    worst = max(worst, abs(m["mean_x"]), abs(m["mean_y"]))
    assert 0.04 < worst < 0.06  # the docstring's figure: 0.052 at radius 3, 5 blades, rim 0.8
