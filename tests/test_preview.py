"""`blurnet.preview`: the PSF families, the camera steps and the picture that shows them."""
import numpy as np
import pytest

from blurnet.preview import camera_steps, family_examples, highlight_window, pick_camera_crop, write_preview
from data_pipeline.crops import TexturedCropper
from data_pipeline.psf import disk_equivalent_radius, motion_spread, psf_isotropy


def test_family_examples_show_every_family_labelled_as_training_labels_it():
    examples = dict((title.split(" L=")[0].split(" r=")[0] + f"#{i}", k) for i, (title, k) in enumerate(family_examples()))
    kernels = list(examples.values())
    assert len(kernels) == 12
    for kernel in kernels:
        assert kernel.ndim == 2 and kernel.shape[0] == kernel.shape[1] and kernel.shape[0] % 2 == 1
        assert kernel.min() >= 0 and kernel.sum() == pytest.approx(1.0, abs=1e-6)
    titles = [title for title, _ in family_examples()]
    shaken, first, second = (motion_spread(k)[0] for k in (kernels[1], kernels[4], kernels[5]))
    assert shaken <= 1.5 and first >= 4.0 and 4.0 <= second < 10.0  # a sharp shake, two motion trajectories
    assert titles[4] == f"shake L={first:.1f}" and titles[1] == f"sharp, shaken L={shaken:.1f}"
    # The second trajectory softened by 0.7 px: labelled by its path's spread, its energy spread wider by the softening.
    path = float(titles[5].split(" L=")[1])
    assert titles[5].startswith("shake, softened 0.7 L=") and 4.0 <= path < 9.0
    assert second == pytest.approx(np.hypot(path, np.sqrt(12) * 0.7), abs=0.3)
    # A trajectory is not a line: its energy spreads across its axis too; a straight streak's barely does.
    assert psf_isotropy(kernels[3]) < 0.02 and psf_isotropy(kernels[4]) > 0.05 and psf_isotropy(kernels[5]) > 0.05
    disk, five, eight, rim, centre, soft = (disk_equivalent_radius(k) for k in kernels[6:])
    assert disk == pytest.approx(5.0, abs=0.05) and five == pytest.approx(0.88 * 5.0, abs=0.1)
    assert five < eight < disk < rim and centre < disk < soft
    assert titles[7] == f"5 blades r={five:.1f}"


def _dark_crop_with_a_bright_spot(size=96):
    y, x = np.mgrid[:size, :size]
    image = 40 + 20 * np.sin(x / 3.0)[..., None] * np.ones(3) + 10 * np.cos(y / 5.0)[..., None]
    image[60:64, 20:24] = 250.0  # a lamp
    return image.astype(np.float32)


def test_camera_steps_each_change_the_pixels_and_highlights_clip():
    steps = camera_steps(_dark_crop_with_a_bright_spot())
    titles = [title for title, _ in steps]
    images = [image for _, image in steps]
    assert titles[0] == "sharp crop" and titles[-1] == "+ JPEG q50" and len(steps) == 6
    assert all(image.shape == images[0].shape for image in images) and images[0].shape[0] == 96 - 2 * (5 + 8)
    for before, after in zip(images, images[1:]):
        assert np.abs(after - before).mean() > 0.2, "a step that does nothing"
    # In linear light the pushed-up highlights clip: more pixels at white than the same blur on sRGB values.
    assert (images[2] >= 254.5).sum() > (images[1] >= 254.5).sum() + 10
    zoom, (top, left) = highlight_window(images, 32)
    y, x = np.unravel_index(np.argmax(np.abs(images[2] - images[1]).sum(axis=-1)), images[0].shape[:2])
    assert zoom == 32 and top <= y < top + zoom and left <= x < left + zoom  # the window holds the clipped highlight
    assert highlight_window(images, 500)[0] == 70  # never larger than the crop
    with pytest.raises(ValueError, match=r"larger than 26 px, got \(20, 20\)"):
        camera_steps(np.zeros((20, 20, 3), np.float32))


def test_pick_camera_crop_prefers_a_dark_crop_with_a_bright_spot():
    bright = np.full((64, 64, 3), 180.0, np.float32)
    dark = _dark_crop_with_a_bright_spot(64)
    flat_dark = np.full((64, 64, 3), 10.0, np.float32)
    croppers = [TexturedCropper(image, min_texture=0.0) for image in (bright, dark, flat_dark)]
    crop = pick_camera_crop(croppers, np.random.default_rng(0), 48, candidates=24)
    assert crop.shape == (48, 48, 3) and crop.max() >= 200 and np.median(crop) < 100


def test_write_preview_draws_the_batch(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (8, 48, 48, 3)).astype(np.float32)
    labels = np.arange(8) % 4
    params = np.tile(np.float32([2.0, 30.0, 1.0]), (8, 1))
    path = write_preview(tmp_path / "p.png", images, labels, params, _dark_crop_with_a_bright_spot(), per_class=2)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 50_000
    assert [p.name for p in tmp_path.iterdir()] == ["p.png"]  # no temporary file left
