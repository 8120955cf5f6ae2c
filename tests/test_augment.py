import dataclasses

import numpy as np
import pytest

from data_pipeline.augment import PALETTE_STRIP, AugmentConfig, augment_sharp, choose_format, palette_dither, sample_palette, save_all_as


def save_as(image, rng, config):
    """One image through the file format `choose_format` draws for it, as the batch makers do."""
    return save_all_as([image], [choose_format(image, rng, config)])[0]


def test_no_augmentation_is_identity():
    crop = np.random.default_rng(0).integers(0, 256, (24, 24, 3), dtype=np.uint8)
    out = augment_sharp(crop, np.random.default_rng(1), AugmentConfig.none())
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, crop.astype(np.float32))
    assert save_as(out, np.random.default_rng(0), AugmentConfig.none()) is out
    rng = np.random.default_rng(0)
    assert choose_format(out, rng, AugmentConfig.none()) == ("none",)
    assert rng.random() == np.random.default_rng(0).random()  # no number drawn: evaluation streams stay the same


def test_augmentation_changes_values_within_range_and_keeps_shape():
    crop = np.random.default_rng(0).integers(0, 256, (24, 24, 3), dtype=np.uint8)
    rng = np.random.default_rng(2)
    outs = [augment_sharp(crop, rng, AugmentConfig()) for _ in range(20)]
    assert all(o.shape == (24, 24, 3) and o.min() >= 0 and o.max() <= 255 for o in outs)
    assert len({round(float(o.mean()), 3) for o in outs}) == 20
    # Flips and rotations only permute pixels: sorted gray values match the plain jitter.
    geo = AugmentConfig(contrast=(1, 1), brightness=(0, 0), gamma=(1, 1), colour=0.0, jpeg_probability=0)
    g = augment_sharp(crop, rng, geo)
    np.testing.assert_array_equal(np.sort(g.ravel()), np.sort(crop.astype(np.float32).ravel()))


def test_jpeg_always_with_probability_one():
    img = np.random.default_rng(0).uniform(0, 255, (32, 32, 3)).astype(np.float32)
    out = save_as(img, np.random.default_rng(0), AugmentConfig(jpeg_probability=1.0, jpeg_quality=(50, 50), palette_probability=0.0))
    assert out.shape == img.shape and 1.0 < np.abs(out - img).mean() < 60
    assert len(np.unique(out.reshape(-1, 3), axis=0)) > 256  # JPEG, not a palette


def _floyd_steinberg_by_pixel(image, palette):
    """The textbook scan, one pixel at a time (the reference for the wavefront version)."""
    work = image.astype(np.float64).copy()
    h, w = work.shape[:2]
    out = np.empty_like(work)
    for y in range(h):
        for x in range(w):
            value = work[y, x].copy()
            out[y, x] = palette[np.argmin(((palette - value) ** 2).sum(1))]
            error = value - out[y, x]
            for dy, dx, share in ((0, 1, 7), (1, -1, 3), (1, 0, 5), (1, 1, 1)):
                if 0 <= y + dy < h and 0 <= x + dx < w:
                    work[y + dy, x + dx] += error * share / 16
    return out


@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (9, 1), (7, 12), (12, 7), (16, 16)])
def test_palette_dither_equals_the_pixel_by_pixel_scan(shape):
    rng = np.random.default_rng(sum(shape))
    image = rng.uniform(0, 255, (*shape, 3)).astype(np.float32)
    palette = np.round(rng.uniform(0, 255, (6, 3))).astype(np.float32)
    np.testing.assert_allclose(palette_dither(image, palette), _floyd_steinberg_by_pixel(image, palette), atol=1e-3)


def test_palette_dither_of_a_stack_equals_one_image_at_a_time():
    rng = np.random.default_rng(7)
    images = rng.uniform(0, 255, (3, 10, 13, 3)).astype(np.float32)
    palettes = np.round(rng.uniform(0, 255, (3, 5, 3))).astype(np.float32)
    stacked = palette_dither(images, palettes)
    assert stacked.shape == images.shape
    for image, palette, out in zip(images, palettes, stacked):
        np.testing.assert_allclose(out, _floyd_steinberg_by_pixel(image, palette), atol=1e-3)
    # save_all_as pads palettes of different sizes and keeps the order of mixed formats.
    formats = [("palette", palettes[0][:2]), ("none",), ("jpeg", 90), ("palette", palettes[2])]
    shown = [images[0], images[1], images[1], images[2]]
    out = save_all_as(shown, formats)
    np.testing.assert_allclose(out[0], _floyd_steinberg_by_pixel(images[0], palettes[0][:2]), atol=1e-3)
    assert out[1] is shown[1] and 0.5 < np.abs(out[2] - images[1]).mean() < 60
    np.testing.assert_allclose(out[3], _floyd_steinberg_by_pixel(images[2], palettes[2]), atol=1e-3)
    with pytest.raises(ValueError, match="'gif'"):
        save_all_as([images[0]], [("gif", 8)])
    # Taller images are dithered in strips of PALETTE_STRIP rows, each strip its own scan.
    tall = rng.uniform(0, 255, (PALETTE_STRIP + 8, 12, 3)).astype(np.float32)
    before = tall.copy()
    [out] = save_all_as([tall], [("palette", palettes[1])])
    np.testing.assert_array_equal(tall, before)  # the input is never written to
    np.testing.assert_allclose(out[:PALETTE_STRIP], _floyd_steinberg_by_pixel(tall[:PALETTE_STRIP], palettes[1]), atol=1e-3)
    np.testing.assert_allclose(out[PALETTE_STRIP:], _floyd_steinberg_by_pixel(tall[PALETTE_STRIP:], palettes[1]), atol=1e-3)


def test_palette_dither_keeps_local_means_with_few_colours():
    # A smooth ramp in 4 colours: every pixel is a palette colour, yet 8 x 8 block means follow the ramp
    # (error diffusion), where plain nearest-colour quantisation is off by up to half a step.
    ramp = np.repeat(np.linspace(20, 230, 64, dtype=np.float32)[None, :, None], 64, axis=0).repeat(3, axis=2)
    palette = np.array([[0, 0, 0], [85, 85, 85], [170, 170, 170], [255, 255, 255]], np.float32)
    out = palette_dither(ramp, palette)
    assert {tuple(c) for c in np.unique(out.reshape(-1, 3), axis=0)} <= {tuple(c) for c in palette}
    blocks = lambda a: a[..., 0].reshape(8, 8, 8, 8).mean(axis=(1, 3))
    assert np.abs(blocks(out) - blocks(ramp)).max() < 6.0
    nearest = palette[np.argmin(np.abs(ramp[..., :1] - palette[:, 0]), axis=-1)]
    assert np.abs(blocks(nearest) - blocks(ramp)).max() > 20.0
    assert palette_dither(ramp, palette).dtype == np.float32


def test_save_as_palette_uses_few_colours_and_adds_grain():
    rng = np.random.default_rng(3)
    ramp = np.linspace(0, 255, 48, dtype=np.float32)
    smooth = np.stack(np.broadcast_arrays(ramp[None, :], ramp[:, None], np.float32(128)), axis=-1).copy()  # R by x, G by y
    smooth += rng.normal(0, 0.5, smooth.shape).astype(np.float32)
    config = AugmentConfig(jpeg_probability=0.0, palette_probability=1.0, palette_colours=(8, 8))
    out = save_as(smooth, np.random.default_rng(4), config)
    assert out.shape == smooth.shape and out.dtype == np.float32
    assert len(np.unique(out.reshape(-1, 3), axis=0)) <= 8
    assert abs(float(out.mean()) - float(smooth.mean())) < 3.0  # brightness kept (to the palette hull)
    assert np.abs(np.diff(out, axis=1)).mean() > 2 * np.abs(np.diff(smooth, axis=1)).mean()  # dither grain
    palette = sample_palette(smooth, 24, np.random.default_rng(5))
    assert palette.shape == (24, 3) and np.all(palette == np.round(palette))


def test_save_as_shares():
    img = np.random.default_rng(0).uniform(0, 255, (8, 8, 3)).astype(np.float32)
    config = AugmentConfig(jpeg_probability=0.5, palette_probability=0.25, palette_colours=(4, 4))
    rng = np.random.default_rng(1)
    kinds = []
    for _ in range(400):
        out = save_as(img, rng, config)
        kinds.append("none" if out is img else "palette" if len(np.unique(out.reshape(-1, 3), axis=0)) <= 4 else "jpeg")
    counts = {k: kinds.count(k) for k in ("jpeg", "palette", "none")}
    assert 160 <= counts["jpeg"] <= 240 and 70 <= counts["palette"] <= 130 and 70 <= counts["none"] <= 130, counts


def test_bad_config():
    with pytest.raises(ValueError, match="1.5"):
        AugmentConfig(jpeg_probability=1.5)
    with pytest.raises(ValueError, match="0.5"):
        AugmentConfig(jpeg_probability=0.6, palette_probability=0.5)
    assert AugmentConfig(jpeg_probability=0.9, palette_probability=0.1).palette_probability == 0.1  # sums to 1 in floats
    with pytest.raises(ValueError, match=r"\(1, 8\)"):
        AugmentConfig(palette_colours=(1, 8))
    with pytest.raises(ValueError, match=r"\(4, 4\)"):
        palette_dither(np.zeros((4, 4)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="uint8"):
        augment_sharp(np.zeros((4, 4, 3), np.float32), np.random.default_rng(0), AugmentConfig())


def test_jpeg_roundtrip_loses_more_at_lower_quality():
    from data_pipeline.augment import jpeg_roundtrip

    img = np.random.default_rng(1).uniform(0, 255, (48, 48, 3)).astype(np.float32)
    errors = [np.abs(jpeg_roundtrip(img, q) - img).mean() for q in (95, 75, 30)]
    assert errors[0] < errors[1] < errors[2]
    assert jpeg_roundtrip(img, 75).dtype == np.float32
    with pytest.raises(ValueError, match="101"):
        jpeg_roundtrip(img, 101)


def test_jpeg_roundtrip_treats_the_array_as_rgb():
    from data_pipeline.augment import jpeg_roundtrip

    detail = np.random.default_rng(2).uniform(0, 255, (64, 64)).astype(np.float32)

    def error_with_detail_in(channel):
        img = np.full((64, 64, 3), 128.0, np.float32)
        img[..., channel] = detail
        return np.abs(jpeg_roundtrip(img, 75)[..., channel] - detail).mean()

    # JPEG keeps luma best; red weighs 0.299 in luma, blue 0.114, so red detail survives better.
    assert error_with_detail_in(0) < 0.9 * error_with_detail_in(2)
    grey = np.random.default_rng(3).uniform(0, 255, (32, 32, 1)).astype(np.float32)
    assert jpeg_roundtrip(grey, 90).shape == (32, 32, 1)


def test_contrast_jitter_spans_its_range_about_the_mean():
    config = AugmentConfig(flips=False, contrast=(0.3, 1.3), brightness=(0, 0), gamma=(1, 1), colour=0.0)
    assert config.jitter() == {"contrast": [0.3, 1.3], "brightness": [0, 0], "gamma": [1, 1], "colour": 0.0,
                               "underexposure_probability": 0.25, "underexposure_gain": [0.25, 0.8]}
    config = dataclasses.replace(config, underexposure_probability=0.0)
    assert AugmentConfig().jitter()["contrast"] == [0.6, 1.3]
    crop = np.random.default_rng(0).integers(96, 160, (32, 32, 3)).astype(np.uint8)  # never clipped at x1.3
    rng = np.random.default_rng(1)
    ratios, means = [], []
    for _ in range(400):
        out = augment_sharp(crop, rng, config)
        ratios.append(out.std() / crop.std())
        means.append(out.mean() - crop.mean())
    assert 0.3 <= min(ratios) < 0.32 and 1.28 < max(ratios) <= 1.3 + 1e-6  # uniform over (0.3, 1.3)
    assert np.mean(ratios) == pytest.approx(0.8, abs=0.03)
    assert np.abs(means).max() < 0.6  # about the crop's mean (up to the LUT's channel-mean rounding)


def test_underexposure_scales_every_level_of_its_share_of_the_crops():
    config = AugmentConfig(flips=False, contrast=(1, 1), brightness=(0, 0), gamma=(1, 1), colour=0.0,
                           underexposure_probability=0.25, underexposure_gain=(0.25, 0.8))
    crop = np.random.default_rng(0).integers(40, 256, (32, 32, 3)).astype(np.uint8)
    rng = np.random.default_rng(1)
    gains = []
    for _ in range(800):
        out = augment_sharp(crop, rng, config)
        gain = out.mean() / crop.mean()
        # One gain for every pixel and channel: the crop scaled, not reshaped.
        np.testing.assert_allclose(out, crop.astype(np.float32) * gain, atol=1e-3)
        gains.append(gain)
    gains = np.array(gains)
    dimmed = gains[gains < 1.0 - 1e-5]
    assert np.all(np.isclose(gains, 1.0, atol=1e-5) | (gains < 1.0 - 1e-5))  # a crop is dimmed or left alone
    assert len(dimmed) / len(gains) == pytest.approx(0.25, abs=0.04)
    assert 0.25 <= dimmed.min() < 0.27 and 0.78 < dimmed.max() <= 0.8 + 1e-6  # uniform over (0.25, 0.8)
    assert dimmed.mean() == pytest.approx(0.525, abs=0.03)


@pytest.mark.parametrize("field, value", [("underexposure_probability", 1.5), ("underexposure_gain", (0.0, 0.5)),
                                          ("underexposure_gain", (0.6, 0.4)), ("underexposure_gain", (0.5, 1.2))])
def test_underexposure_settings_out_of_range_are_refused_with_the_value(field, value):
    with pytest.raises(ValueError, match=field) as error:
        AugmentConfig(**{field: value})
    assert repr(value) in str(error.value)


@pytest.mark.parametrize("field, value, message", [
    ("contrast", (1.3, 0.6), "low <= high"), ("gamma", (1.4, 0.7), "low <= high"), ("brightness", (25.0, -25.0), "low <= high"),
    ("contrast", (0.0, 1.0), "positive"), ("colour", -3.0, r"\[0, 1\)"), ("colour", 1.0, r"\[0, 1\)")])
def test_jitter_ranges_that_make_no_sense_are_refused_with_the_value(field, value, message):
    with pytest.raises(ValueError, match=f"{field}.*{message}") as error:
        AugmentConfig(**{field: value})
    assert repr(value) in str(error.value)


def test_file_formats_record():
    assert AugmentConfig().file_formats() == {"jpeg_probability": 0.6, "jpeg_quality": [50, 95],
                                              "palette_probability": 0.05, "palette_colours": [24, 128]}
    assert AugmentConfig.none().file_formats()["palette_probability"] == 0.0


def test_blurnet_json_records_the_jitter_beside_the_camera_and_formats():
    from data_pipeline.batches import PipelineConfig

    record = PipelineConfig(augment=AugmentConfig(contrast=(0.5, 1.1))).camera_record()
    assert record["contrast"] == [0.5, 1.1] and record["gamma"] == [0.7, 1.4] and record["colour"] == 0.1
    assert record["jpeg_quality"] == [50, 95] and "shot_noise" in record
