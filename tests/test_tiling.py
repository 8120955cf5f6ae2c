import numpy as np
import pytest
import tensorflow as tf

from blurnet.classify import select_tiles, tile_boxes, weighted_answer
from blurnet.tiling import answer_by_tiles, cut_tiles, texture_weighted_median, tile_starts, tile_texture
from data_pipeline.crops import gradient_magnitude


def fake_model(images):
    """Probabilities that depend on each tile's content and size (mean brightness, height, width)."""
    images = tf.convert_to_tensor(images, tf.float32)
    h, w = tf.cast(tf.shape(images)[1], tf.float32), tf.cast(tf.shape(images)[2], tf.float32)
    m = tf.reduce_mean(images, axis=[1, 2]) / 255.0
    logits = tf.stack([m[:, 0], m[:, 1] * 2, m[:, 2] - m[:, 0], tf.fill(tf.shape(m[:, 0]), h / w)], axis=1)
    return tf.nn.softmax(logits)


@pytest.mark.parametrize("tile", [96, 128])
def test_tile_starts_match_predict_tile_boxes_on_every_length(tile):
    starts = tf.function(lambda length: tile_starts(length, tile), input_signature=[tf.TensorSpec([], tf.int32)],
                         autograph=False)
    differing = [length for length in range(16, 6001)
                 if starts(length).numpy().tolist() != sorted({top for top, _, _, _ in tile_boxes(length, 40, tile)})]
    assert differing == []  # float64 in predict put 1 px apart on 56 lengths at 96 px, 36 at 128


def test_cut_tiles_order_and_content():
    images = np.arange(2 * 5 * 7 * 1, dtype=np.float32).reshape(2, 5, 7, 1)
    tiles, count = cut_tiles(images, 4)
    assert int(count) == 4 and tiles.shape == (8, 4, 4, 1)
    boxes = tile_boxes(5, 7, 4)  # (top, left, h, w), row-major
    expected = [images[b, t:t + h, l:l + w] for b in range(2) for t, l, h, w in boxes]
    np.testing.assert_array_equal(tiles.numpy(), np.stack(expected))


def test_tile_texture_matches_the_pipeline_gradient():
    tiles = np.random.default_rng(0).uniform(0, 255, (3, 16, 20, 3)).astype(np.float32)
    expected = [gradient_magnitude(t).mean() for t in tiles]
    np.testing.assert_allclose(tile_texture(tiles).numpy(), expected, rtol=1e-4)


def test_large_inputs_are_answered_like_predict_aggregates_tiles():
    rng = np.random.default_rng(1)
    images = rng.uniform(0, 255, (2, 100, 150, 3)).astype(np.float32)
    images[1, :, :80] = 128.0  # a flat left part: those tiles must not count
    got = answer_by_tiles(fake_model, images, 48).numpy()
    for b in range(2):
        tiles = [images[b, t:t + h, l:l + w] for t, l, h, w in tile_boxes(100, 150, 48)]
        probabilities = fake_model(np.stack(tiles)).numpy()
        textures = [gradient_magnitude(t).mean() for t in tiles]
        chosen, weights, ones = select_tiles(np.array(textures))
        expected, used = weighted_answer(probabilities[chosen], weights, ones)[0], len(chosen)
        np.testing.assert_allclose(got[b], expected, rtol=1e-4)
    assert used < len(tiles)  # the flat tiles really were left out
    whole = fake_model(images).numpy()
    assert np.abs(got - whole).max() > 1e-3


def test_inputs_no_larger_than_a_tile_are_answered_whole_and_chunks_change_nothing(monkeypatch):
    images = np.random.default_rng(2).uniform(0, 255, (3, 48, 40, 3)).astype(np.float32)
    np.testing.assert_allclose(answer_by_tiles(fake_model, images, 48).numpy(), fake_model(images).numpy(), rtol=1e-6)
    big = np.random.default_rng(3).uniform(0, 255, (2, 130, 97, 3)).astype(np.float32)
    at_once = answer_by_tiles(fake_model, big, 32).numpy()  # 5 x 4 tiles per image, 40 in one chunk
    import blurnet.tiling

    monkeypatch.setattr(blurnet.tiling, "CHUNK_TILES", 7)
    np.testing.assert_allclose(answer_by_tiles(fake_model, big, 32).numpy(), at_once, rtol=1e-6)
    traced = tf.function(lambda x: answer_by_tiles(fake_model, x, 32),
                         input_signature=[tf.TensorSpec((None, None, None, 3), tf.float32)])
    np.testing.assert_allclose(traced(big).numpy(), at_once, rtol=1e-5)
    whole = tf.function(lambda x: answer_by_tiles(fake_model, x, 48),
                        input_signature=[tf.TensorSpec((None, None, None, 3), tf.float32)])
    np.testing.assert_allclose(whole(images).numpy(), fake_model(images).numpy(), rtol=1e-6)
    with pytest.raises(ValueError, match="0"):
        answer_by_tiles(fake_model, images, 0)


def test_an_empty_batch_gives_an_empty_answer():
    empty = np.zeros((0, 40, 40, 3), np.float32)
    assert answer_by_tiles(fake_model, empty, 32).shape == (0, 4)
    traced = tf.function(lambda x: answer_by_tiles(fake_model, x, 32),
                         input_signature=[tf.TensorSpec((None, None, None, 3), tf.float32)])
    assert traced(empty).shape == (0, 4)


def test_texture_weighted_median_against_numpy():
    rng = np.random.default_rng(5)
    values = rng.normal(size=(3, 7, 2)).astype("float32")
    textures = rng.uniform(0, 20, (3, 7)).astype("float32")
    textures[2] = rng.uniform(0, 3, 7)  # every tile flat: all count, equally
    got = texture_weighted_median(tf.constant(values), tf.constant(textures)).numpy()
    for b in range(3):
        weights = np.where(textures[b] >= 4.0, textures[b], 0.0) if (textures[b] >= 4.0).any() else np.ones(7)
        for k in range(2):
            order = np.argsort(values[b, :, k])
            cumulative = np.cumsum(weights[order])
            expected = values[b, order[np.searchsorted(cumulative, 0.5 * cumulative[-1])], k]
            assert got[b, k] == expected
    # robust: one wild tile among five does not move it far
    wild = np.array([[[1.0], [1.1], [0.9], [1.05], [500.0]]], np.float32)
    assert texture_weighted_median(tf.constant(wild), tf.constant(np.full((1, 5), 10.0, np.float32))).numpy()[0, 0] == pytest.approx(1.05)


def test_numpy_weighted_median_is_the_exports():
    from blurnet.classify import weighted_median

    rng = np.random.default_rng(6)
    values = rng.normal(size=(9, 5)).astype("float32")
    weights = rng.uniform(5, 20, 9).astype("float32")  # all textured: every tile counts by its texture
    np.testing.assert_array_equal(weighted_median(values, weights),
                                  texture_weighted_median(tf.constant(values[None]), tf.constant(weights[None])).numpy()[0])
    assert weighted_median(np.array([[1.0], [2.0], [3.0], [100.0]]), np.array([1.0, 1.0, 1.0, 0.5]))[0] == 2.0


def test_a_tile_with_a_nan_pixel_weighs_nothing_in_either_combination():
    rng = np.random.default_rng(3)
    image = rng.uniform(0, 255, (1, 64, 96, 3)).astype(np.float32)  # 6 textured tiles of 32 px
    spoilt = image.copy()
    spoilt[0, 40, 70, 1] = np.nan  # in the tile at row 1, column 2: the last one
    clean = answer_by_tiles(fake_model, image[:, :, :], 32).numpy()
    answer = answer_by_tiles(fake_model, spoilt, 32).numpy()
    assert np.isfinite(answer).all() and abs(answer.sum() - 1) < 1e-5 and not np.allclose(answer, clean)
    tiles, _ = cut_tiles(image, 32)
    textures = tile_texture(tiles).numpy()
    probabilities = fake_model(tiles).numpy()
    expected = (probabilities[:5] * textures[:5, None]).sum(axis=0) / textures[:5].sum()  # the other five tiles
    np.testing.assert_allclose(answer[0], expected / expected.sum(), atol=1e-5)
    values = tf.constant(probabilities[None], tf.float32)
    spoilt_values = tf.tensor_scatter_nd_update(values, [[0, 5, 0]], [np.nan])
    spoilt_textures = tf.constant(np.r_[textures[:5], np.nan][None], tf.float32)
    median = texture_weighted_median(spoilt_values, spoilt_textures).numpy()
    np.testing.assert_allclose(median, texture_weighted_median(values[:, :5], textures[None, :5]).numpy(), atol=1e-6)


def test_predict_measures_tile_textures_as_the_exported_model_does():
    from blurnet.classify import prepare

    blocks = np.kron((np.indices((3, 4)).sum(axis=0) % 2) * 255, np.ones((32, 32)))  # a checkerboard of 32 px tiles
    rng = np.random.default_rng(3)
    for gray in (blocks, 128 + 0.3 * (rng.uniform(0, 255, (96, 128)) - 128)):  # edges on tile borders; low contrast
        image = np.repeat(gray[:, :, None], 3, axis=2).astype(np.uint8)
        prepared = prepare(image, 32, scale=1)
        tiles, _ = cut_tiles(image[None].astype(np.float32), 32)
        np.testing.assert_allclose(prepared.textures, tile_texture(tiles).numpy(), atol=0.02)
    np.testing.assert_allclose(prepare(np.repeat(blocks[:, :, None], 3, axis=2).astype(np.uint8), 32, scale=1).textures,
                               0.0)  # each block is flat (measured on the whole image, its edges gave 15.6 a tile)
