"""`benchmarks/defocus_sizes.py`: the tile sizing its figures on real lens blur rest on."""

import numpy as np
import pytest
from conftest import load_benchmark

from data_pipeline.degrade import convolve
from data_pipeline.psf import defocus_psf, gaussian_psf


@pytest.fixture(scope="module")
def defocus_sizes():
    return load_benchmark("defocus_sizes")


def _texture(seed=0, size=192):
    rng = np.random.default_rng(seed)
    import cv2

    noise = cv2.GaussianBlur(rng.uniform(0, 255, (size, size)).astype(np.float32), (0, 0), 1.2)
    return np.repeat(((noise - noise.mean()) * 4 + 128).clip(0, 255)[..., None], 3, axis=2)


def test_sized_tiles_finds_the_disk_and_tells_it_from_a_gaussian(defocus_sizes):
    sharp = _texture()
    by_disk = defocus_sizes.sized_tiles(sharp, convolve(sharp, defocus_psf(4.0)))
    assert len(by_disk) == 9  # a 192 px pair: 3 x 3 textured tiles of 64 px
    # Each tile sized within a grid step of the 4 px disk, clearly blurred, and a disk fits better than a Gaussian.
    assert all(abs(radius - 4.0) <= 0.25 and blurred and not gaussian for _, _, radius, blurred, gaussian in by_disk)
    by_gaussian = defocus_sizes.sized_tiles(sharp, convolve(sharp, gaussian_psf(2.0)))
    assert all(blurred and gaussian for _, _, _, blurred, gaussian in by_gaussian)
    # An unblurred pair (up to a gain and an offset) is not "blurred": no disk explains it 1.5 times better.
    same = defocus_sizes.sized_tiles(sharp, 0.8 * sharp + 10)
    assert not any(blurred for _, _, _, blurred, _ in same)
