import numpy as np
import pytest

from data_pipeline.classes import CLASS_NAMES, BlurRanges
from data_pipeline.degrade import (BlurParams, add_noise, convolve, degrade, depth_defocus, make_psf, psf_half_size,
                                   sample_params)
from data_pipeline.psf import defocus_psf, gaussian_psf, motion_psf


def test_convolve_is_a_true_convolution_with_reflect_borders():
    image = np.zeros((21, 21), np.float32)
    image[10, 10] = 100.0
    # An asymmetric kernel: convolution places it unflipped around the impulse.
    k = np.zeros((3, 3), np.float32)
    k[0, 2] = 1.0
    out = convolve(image, k)
    assert out[9, 11] == pytest.approx(100.0)
    assert out.sum() == pytest.approx(100.0)
    flat = np.full((16, 16, 3), 77.0, np.float32)
    np.testing.assert_allclose(convolve(flat, gaussian_psf(3.5)), 77.0, rtol=1e-5)  # reflect: no dark border


def test_convolve_preserves_mean_and_shape():
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 255, (64, 48, 3)).astype(np.float32)
    out = convolve(image, motion_psf(9, 30))
    assert out.shape == image.shape and out.dtype == np.float32
    assert out.mean() == pytest.approx(image.mean(), rel=0.01)
    assert out.std() < image.std() * 0.6


def test_noise_has_the_requested_sigma():
    rng = np.random.default_rng(1)
    out = add_noise(np.full((200, 200), 128.0), 2.5, rng)
    assert (out - 128).std() == pytest.approx(2.5, rel=0.03)
    assert (out - 128).mean() == pytest.approx(0.0, abs=0.05)
    with pytest.raises(ValueError, match="-1"):
        add_noise(out, -1.0, rng)


def test_degrade_clips_to_0_255():
    rng = np.random.default_rng(2)
    out = degrade(np.full((32, 32, 3), 255.0), BlurParams(1, 2.0, 0.0, 2.5), rng)
    assert out.max() <= 255.0 and out.min() >= 0.0


def test_sample_params_stays_in_the_spec_ranges():
    rng = np.random.default_rng(3)
    r = BlurRanges()
    for label, name in enumerate(CLASS_NAMES):
        draws = [sample_params(rng, name) for _ in range(300)]
        assert all(d.label == label for d in draws)
        assert all(r.noise_sigma[0] <= d.noise_sigma <= r.noise_sigma[1] for d in draws)
        if name == "sharp":
            assert all(d.strength == 0 for d in draws)
            continue
        lo, hi = r.strength_range(name)
        s = np.array([d.strength for d in draws])
        assert s.min() >= lo and s.max() <= hi
        assert s.min() < lo + 0.1 * (hi - lo) and s.max() > hi - 0.1 * (hi - lo)  # covers the whole range
        if name == "motion":
            a = np.array([d.angle for d in draws])
            assert a.min() < 10 and a.max() > 170


def test_make_psf_matches_the_class():
    assert make_psf(BlurParams(0)).shape == (1, 1)
    assert make_psf(BlurParams(1, 2.0)).shape == gaussian_psf(2.0).shape
    np.testing.assert_array_equal(make_psf(BlurParams(2, 9.0, 45.0)), motion_psf(9.0, 45.0))


def test_margin_covers_the_largest_psf():
    # A shake PSF of extent 21 is centred on its centroid, which may sit near one end: it reaches 21 + 1 px; softened
    # (sigma up to 1 px), 3 px more.
    from data_pipeline.degrade import PsfFamilies, sample_blur

    assert psf_half_size(BlurRanges()) == 25
    assert psf_half_size(BlurRanges(), PsfFamilies(motion_softness=0.0)) == 22
    assert psf_half_size(BlurRanges(), PsfFamilies.classic()) == 13  # Gaussian sigma 3.5, truncated at 3.5 sigma: 27 x 27
    assert psf_half_size(BlurRanges(), PsfFamilies(0.0, 0.0, 0.0, 1.0)) == 15  # a 21 px streak (25 x 25), softened
    # Sharp samples' shakes (extent <= 1.5 px) without motion trajectories: the softened streak is still the widest
    assert psf_half_size(BlurRanges(), PsfFamilies(0.0, 0.0, 1.0, 1.0)) == 15
    assert psf_half_size(BlurRanges(), PsfFamilies(0.0, 0.0, 1.0, 0.0)) == 13

    rng = np.random.default_rng(0)
    sizes = [sample_blur(rng, label % 4, families=PsfFamilies(1.0, 1.0, 1.0, 1.0))[1].shape[0] for label in range(400)]
    assert max(sizes) // 2 <= 25
    streaks = [sample_blur(rng, "motion", families=PsfFamilies(0.0, 0.0, 0.0, 1.0))[1].shape for _ in range(100)]
    assert max(max(shape) for shape in streaks) // 2 <= 15


def test_params_made_by_hand():
    from data_pipeline.psf import motion_spread

    # A shake given only its strength is drawn at that size (not as a 3 x 3 identity)
    psf = make_psf(BlurParams(2, 12.0, family="shake", psf_seed=5))
    assert psf.shape[0] >= 13 and abs(psf.sum() - 1.0) < 1e-6
    assert 4.0 <= motion_spread(psf)[0] <= 12.0
    np.testing.assert_array_equal(psf, make_psf(BlurParams(2, 3.0, family="shake", psf_seed=5, extent=12.0)))
    with pytest.raises(ValueError, match="motion shake needs an extent"):
        make_psf(BlurParams(2, family="shake", psf_seed=5))
    assert make_psf(BlurParams(0, family="shake", psf_seed=5)).sum() == pytest.approx(1.0)  # sharp: drawn from the seed
    assert BlurParams(np.int32(2)).class_name == "motion"  # a label read from an array
    for bad, match in [(dict(label=1, family="shake"), r"gaussian.*\[''\].*'shake'"),
                       (dict(label=0, family="lens"), "sharp.*'lens'"),
                       (dict(label=3, family="disk"), "defocus.*'disk'"),
                       (dict(label=4), "label must be an integer in 0..3, got 4"),
                       (dict(label=1.5), "label must be an integer in 0..3, got 1.5"),
                       (dict(label="motion"), "got 'motion'"), (dict(label=True), "got True")]:
        with pytest.raises(ValueError, match=match):
            BlurParams(**bad)


def test_bad_labels_and_ranges():
    with pytest.raises(ValueError, match="blurry"):
        sample_params(np.random.default_rng(0), "blurry")
    with pytest.raises(ValueError, match=r"\(3.0, 1.0\)"):
        BlurRanges(gaussian_sigma=(3.0, 1.0))
    with pytest.raises(ValueError, match="defocus_radius"):
        BlurRanges(defocus_radius=(0.0, 7.0))
    with pytest.raises(ValueError, match="shape"):
        convolve(np.zeros((4, 4, 3, 2)), gaussian_psf(1.0))


@pytest.mark.parametrize("name, floor", [("gaussian_sigma", 0.5), ("motion_length", 2.0), ("defocus_radius", 1.0)])
def test_range_floors_blur_and_sizes_that_leave_the_image_sharp_are_refused(name, floor):
    from data_pipeline.classes import RANGE_FLOORS

    assert RANGE_FLOORS[name] == floor
    at_floor = {"gaussian_sigma": lambda: [gaussian_psf(floor)], "defocus_radius": lambda: [defocus_psf(floor)],
                "motion_length": lambda: [motion_psf(floor, a) for a in range(0, 180, 5)]}[name]()
    assert max(float(k.max()) for k in at_floor) <= 0.62  # at least 38 % of the energy leaves the centre pixel
    below = {"gaussian_sigma": gaussian_psf(0.3), "defocus_radius": defocus_psf(0.5), "motion_length": motion_psf(1.0, 0.0)}[name]
    assert float(below.max()) > 0.98  # sizes below the floors leave the image sharp: they would be labelled blurred
    BlurRanges(**{name: (floor, 2 * floor + 5)})  # accepted
    with pytest.raises(ValueError, match=rf"{name} range \({floor - 0.1:g}, .*minimum {floor:g}.*nearly sharp"):
        BlurRanges(**{name: (floor - 0.1, 2 * floor + 5)})


def test_ranges_must_be_finite_and_read_from_pairs_of_numbers():
    with pytest.raises(ValueError, match=r"gaussian_sigma range \(1.0, inf\) must be finite"):
        BlurRanges(gaussian_sigma=(1.0, float("inf")))
    with pytest.raises(ValueError, match=r"noise_sigma range \(nan, 2.0\) must be finite"):
        BlurRanges(noise_sigma=(float("nan"), 2.0))
    with pytest.raises(ValueError, match=r"blur_ranges\['gaussian_sigma'\] must be two numbers .* got '13'"):
        BlurRanges.from_dict({"gaussian_sigma": "13"})
    assert BlurRanges.from_dict({"gaussian_sigma": [1, 3]}).gaussian_sigma == (1.0, 3.0)


def test_ranges_round_trip_and_scale():
    r = BlurRanges()
    assert BlurRanges.from_dict(r.to_dict()) == r
    assert r.scaled(4).defocus_radius == (8.0, 28.0)
    assert r.scaled(4).motion_angle == r.motion_angle


@pytest.mark.parametrize("shape", [(7, 3), (3, 7), (5, 5)])
def test_convolve_takes_rank_one_kernels_of_any_odd_shape(shape):
    """Rank-1 kernels go through two 1-D passes; the result equals the 2-D filter's, tall or wide."""
    import cv2

    rng = np.random.default_rng(0)
    image = rng.uniform(0, 255, (30, 40, 3)).astype(np.float32)
    kernel = np.outer(rng.uniform(0.1, 1, shape[0]), rng.uniform(0.1, 1, shape[1])).astype(np.float32)
    kernel /= kernel.sum()
    expected = cv2.filter2D(image, cv2.CV_32F, kernel[::-1, ::-1].copy(), borderType=cv2.BORDER_REFLECT)
    np.testing.assert_allclose(convolve(image, kernel), expected, atol=1e-3)


def test_depth_defocus_runs_its_radius_along_a_ramp():
    rng = np.random.default_rng(3)
    image = rng.uniform(0, 255, (41, 61, 3)).astype(np.float32)
    # Equal ends: one disk.
    np.testing.assert_allclose(depth_defocus(image, 3.0, 3.0, 20.0), convolve(image, defocus_psf(3.0)), atol=1e-4)
    # Left to right, 2 -> 4 px: the middle column is the 3 px disk's, the edge columns their own disks'.
    ramp = depth_defocus(image, 2.0, 4.0, 0.0)
    np.testing.assert_allclose(ramp[:, 30], convolve(image, defocus_psf(3.0))[:, 30], atol=1e-3)
    np.testing.assert_allclose(ramp[:, 0], convolve(image, defocus_psf(2.0))[:, 0], atol=1e-3)
    np.testing.assert_allclose(ramp[:, -1], convolve(image, defocus_psf(4.0))[:, -1], atol=1e-3)
    # 90 degrees runs bottom to top (counter-clockwise on screen): the top row has the end radius.
    up = depth_defocus(image, 2.0, 4.0, 90.0)
    np.testing.assert_allclose(up[0], convolve(image, defocus_psf(4.0))[0], atol=1e-3)
    np.testing.assert_allclose(up[-1], convolve(image, defocus_psf(2.0))[-1], atol=1e-3)
    # Blur grows along the ramp: less detail (pixel-to-pixel change) where the radius is larger.
    detail = np.abs(np.diff(ramp, axis=0)).mean(axis=(0, 2))
    assert detail[:10].mean() > 1.5 * detail[-10:].mean()
    flat = np.full((21, 21), 77.0, np.float32)
    np.testing.assert_allclose(depth_defocus(flat, 1.0, 6.5, 45.0), flat, atol=1e-3)  # every layer sums to 1
    # With a margin, the kept part runs from start to end: its first and last columns have the end radii.
    kept = depth_defocus(image, 2.0, 4.0, 0.0, margin=10)
    np.testing.assert_allclose(kept[:, 10], convolve(image, defocus_psf(2.0))[:, 10], atol=1e-3)
    np.testing.assert_allclose(kept[:, 50], convolve(image, defocus_psf(4.0))[:, 50], atol=1e-3)
    np.testing.assert_allclose(kept[:, :10], convolve(image, defocus_psf(2.0))[:, :10], atol=1e-3)  # held beyond
    with pytest.raises(ValueError, match=r"start radius must be a finite number >= 0.5 px, got 0.2"):
        depth_defocus(image, 0.2, 3.0, 0.0)
    with pytest.raises(ValueError, match=r"angle must be a finite number of degrees, got nan"):
        depth_defocus(image, 2.0, 3.0, float("nan"))
    with pytest.raises(ValueError, match=r"leave part of the 41x61 image, got 21"):
        depth_defocus(image, 2.0, 3.0, 0.0, margin=21)
