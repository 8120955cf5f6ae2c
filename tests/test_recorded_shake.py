"""`benchmarks/recorded_shake.py`: how it reads a recorded PSF image and shrinks it."""
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import load_benchmark

from data_pipeline.psf import motion_psf, motion_spread, psf_isotropy, psf_moments


@pytest.fixture(scope="module")
def recorded_shake():
    return load_benchmark("recorded_shake")


def _streak_image(tmp_path, floor_noise: float) -> Path:
    """A 12 px streak at 30 degrees drawn as a 0..255 PSF image on a 36 x 30 px noise floor, as a PNG."""
    streak = np.zeros((36, 30))
    kernel = motion_psf(12.0, 30.0)
    top, left = (36 - kernel.shape[0]) // 2, (30 - kernel.shape[1]) // 2
    streak[top:top + kernel.shape[0], left:left + kernel.shape[1]] = kernel / kernel.max() * 240
    noise = np.random.default_rng(0).uniform(0, floor_noise, streak.shape)
    path = tmp_path / "Kernel9.png"
    cv2.imwrite(str(path), np.clip(streak + noise, 0, 255).astype(np.uint8))
    return path


def test_recorded_kernel_takes_off_the_noise_floor(recorded_shake, tmp_path):
    kernel = recorded_shake.recorded_kernel(_streak_image(tmp_path, floor_noise=10.0))  # under 5 % of the peak (240)
    assert kernel.shape[0] % 2 == 1 and kernel.shape[1] % 2 == 1 and kernel.sum() == pytest.approx(1.0) and kernel.min() >= 0
    moments = psf_moments(kernel)
    assert max(abs(moments["mean_x"]), abs(moments["mean_y"])) <= 0.5 + 1e-9  # centred: blurring shifts nothing
    spread, angle = motion_spread(kernel)
    assert spread == pytest.approx(12.0, abs=0.8) and angle == pytest.approx(30.0, abs=2.0)
    assert psf_isotropy(kernel) < 0.02
    kept = recorded_shake.recorded_kernel(_streak_image(tmp_path, floor_noise=10.0), floor=0.0)  # the floor left in
    assert motion_spread(kept)[0] > 20.0  # noise spread over the whole frame reads as a wide blur
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.zeros((9, 9), np.uint8))
    with pytest.raises(ValueError, match="blank.png' holds no PSF"):
        recorded_shake.recorded_kernel(blank)


@pytest.mark.parametrize("factor", [2, 4])
def test_shrunk_divides_the_spread(recorded_shake, tmp_path, factor):
    kernel = recorded_shake.recorded_kernel(_streak_image(tmp_path, floor_noise=0.0))
    small = recorded_shake.shrunk(kernel, factor)
    assert small.shape[0] % 2 == 1 and small.shape[1] % 2 == 1 and small.sum() == pytest.approx(1.0)
    assert motion_spread(small)[0] == pytest.approx(motion_spread(kernel)[0] / factor, rel=0.12)
    assert motion_spread(small)[1] == pytest.approx(30.0, abs=4.0)
    moments = psf_moments(small)
    assert max(abs(moments["mean_x"]), abs(moments["mean_y"])) <= 0.5 + 1e-9  # centred again
    assert recorded_shake.shrunk(kernel, 1) is kernel


def test_streaks_match_the_kernel_spread_and_angle(recorded_shake, tmp_path):
    kernel = recorded_shake.recorded_kernel(_streak_image(tmp_path, floor_noise=0.0))
    streak, softened = recorded_shake.streaks(kernel)
    assert motion_spread(streak)[0] == pytest.approx(motion_spread(kernel)[0], rel=0.03)
    assert motion_spread(streak)[1] == pytest.approx(motion_spread(kernel)[1], abs=1.0)
    # softened by SOFTENED_STREAK_SIGMA (1 px): about 1 px^2 more variance along every axis, still centred
    assert recorded_shake.SOFTENED_STREAK_SIGMA == 1.0
    assert psf_moments(softened)["mean_r2"] == pytest.approx(psf_moments(streak)["mean_r2"] + 2.0, abs=0.05)
    assert max(abs(psf_moments(softened)["mean_x"]), abs(psf_moments(softened)["mean_y"])) < 1e-6
