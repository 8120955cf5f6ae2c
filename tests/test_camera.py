import numpy as np
import pytest

from data_pipeline.camera import (
    CameraConfig,
    add_highlights,
    expose,
    linear_to_srgb,
    resample,
    srgb_to_linear,
    unsharp_mask,
)
from data_pipeline.degrade import convolve
from data_pipeline.psf import defocus_psf, identity_psf

ALWAYS = CameraConfig(linear_probability=1.0, highlight_probability=0.0, shot_noise=(0.0, 0.0), sharpen_probability=0.0,
                      resample_probability=0.0)


def test_srgb_round_trip_and_known_values():
    levels = np.arange(256, dtype=np.float32)
    np.testing.assert_allclose(linear_to_srgb(srgb_to_linear(levels)), levels, atol=0.1)
    fine = np.linspace(0, 255, 4001, dtype=np.float32)  # the tables against the exact formula
    v = fine / 255
    exact = np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)
    assert np.abs(srgb_to_linear(fine) - exact).max() < 3e-4  # half a step of 1/16 grey level at the steepest
    assert srgb_to_linear(np.float32(255.0)) == pytest.approx(1.0)
    assert linear_to_srgb(np.float32(0.5)) == pytest.approx(255 * 0.735357, abs=0.05)  # mid grey in light is sRGB 188
    assert srgb_to_linear(np.float32(10.0)) == pytest.approx(10 / 255 / 12.92, rel=1e-5)  # linear toe
    assert linear_to_srgb(np.float32(3.0)) == 255.0  # light above white clips


def test_without_camera_steps_expose_is_the_plain_blur_model():
    rng = np.random.default_rng(0)
    sharp = rng.uniform(0, 255, (40, 40, 3)).astype(np.float32)
    noise = rng.standard_normal(sharp.shape).astype(np.float32)
    out = expose(sharp, defocus_psf(3.0), 2.0, np.random.default_rng(1), CameraConfig.none(), lambda _, shape: noise)
    np.testing.assert_allclose(out, np.clip(convolve(sharp, defocus_psf(3.0)) + 2.0 * noise, 0, 255), atol=1e-4)


def test_blur_in_linear_light_brightens_a_blurred_edge():
    edge = np.zeros((21, 41, 3), np.float32)
    edge[:, 20:] = 255.0
    psf = defocus_psf(5.0)
    plain = expose(edge, psf, 0.0, np.random.default_rng(0), CameraConfig.none())
    linear = expose(edge, psf, 0.0, np.random.default_rng(0), ALWAYS)
    # A symmetric PSF splits the light evenly about the edge (between columns 19 and 20): on sRGB values the
    # two pixels sum to 255, in linear light their *light* sums to 1, so the blurred edge looks brighter.
    assert plain[10, 19, 0] + plain[10, 20, 0] == pytest.approx(255.0, abs=0.01)
    assert srgb_to_linear(linear[10, 19, 0]) + srgb_to_linear(linear[10, 20, 0]) == pytest.approx(1.0, abs=0.005)
    assert linear[:, 15:25].mean() > plain[:, 15:25].mean() + 15


def test_highlights_clip_into_discs():
    dark = np.full((61, 61, 3), 0.02, np.float32)
    dark[30, 30] = 0.9
    bright = add_highlights(dark, np.random.default_rng(0))
    assert bright.max() >= 2.0 and (bright > 1.0).sum() <= 6 * 49 * 3
    blurred = linear_to_srgb(convolve(bright, defocus_psf(6.0)))
    # A light far above white, spread by a disk of radius 6, stays saturated over a disc, not a soft blob.
    saturated = (blurred[..., 0] >= 254.5).sum()
    assert saturated >= 30
    plain = linear_to_srgb(convolve(np.clip(bright, 0, 1), defocus_psf(6.0)))
    assert (plain[..., 0] >= 254.5).sum() < saturated


def test_shot_noise_grows_with_the_signal():
    config = CameraConfig(linear_probability=1.0, highlight_probability=0.0, shot_noise=(0.0005, 0.0005),
                          sharpen_probability=0.0, resample_probability=0.0)
    stds = []
    for level in (0.05, 0.6):
        flat = np.full((64, 64, 3), 255.0 * level, np.float32)
        linear = srgb_to_linear(expose(flat, identity_psf(), 0.0, np.random.default_rng(1), config))
        stds.append(float(linear.std()))
    # Variance k * signal: the std grows with the square root of the linear signal.
    ratio = np.sqrt(srgb_to_linear(np.float32(0.6 * 255)) / srgb_to_linear(np.float32(0.05 * 255)))
    assert stds[1] / stds[0] == pytest.approx(ratio, rel=0.15)
    assert stds[1] == pytest.approx(np.sqrt(0.0005 * srgb_to_linear(np.float32(0.6 * 255))), rel=0.1)


def test_sharpening_leaves_halos_and_resampling_keeps_the_mean():
    edge = np.full((20, 40, 3), 60.0, np.float32)
    edge[:, 20:] = 180.0
    sharpened = unsharp_mask(edge, 1.0, 1.0)
    assert sharpened.max() > 190 and sharpened.min() < 50  # overshoot on both sides of the edge
    texture = np.random.default_rng(2).uniform(0, 255, (48, 48, 3)).astype(np.float32)
    moved = resample(texture, np.random.default_rng(3))
    assert moved.shape == texture.shape and np.abs(moved - texture).mean() > 5
    assert moved.mean() == pytest.approx(texture.mean(), abs=2)


def test_sharp_samples_go_through_the_camera_too():
    config = CameraConfig(linear_probability=1.0, highlight_probability=0.0, shot_noise=(0.0004, 0.0004),
                          sharpen_probability=1.0, resample_probability=1.0)
    sharp = np.random.default_rng(4).uniform(20, 235, (32, 32, 3)).astype(np.float32)
    out = expose(sharp, identity_psf(), 0.0, np.random.default_rng(5), config)
    assert out.dtype == np.float32 and out.min() >= 0 and out.max() <= 255
    assert np.abs(out - sharp).mean() > 5


def test_bad_camera_settings_are_refused():
    with pytest.raises(ValueError, match="1.5"):
        CameraConfig(sharpen_probability=1.5)
    with pytest.raises(ValueError, match="shot_noise"):
        CameraConfig(shot_noise=(0.01, 0.001))


@pytest.mark.parametrize("sigma", [-1.0, float("nan"), float("inf")])
def test_expose_refuses_a_bad_noise_sigma(sigma):
    with pytest.raises(ValueError, match="noise sigma must be a finite number >= 0, got"):
        expose(np.zeros((8, 8, 3), np.float32), identity_psf(), sigma, np.random.default_rng(0), ALWAYS)

