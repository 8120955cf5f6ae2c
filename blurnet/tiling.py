"""Inputs larger than the training crop answered tile by tile, inside the exported model.

The model learns on crops of `image_size` px. Called whole on larger crops its
answers drift: the bundled model (96 px) scores 0.965 on 192 px crops of the
held-out photographs (sharp recall 0.898), but 0.998 on the same images cut
into four 96 px tiles with their answers averaged by texture (README, "The
bundled model"). So `serve` (`blurnet.export`) does what `blurnet predict`
does: an input longer than a tile on either side is cut into tiles of the
training size, spread evenly to cover it (the last ones overlap); each tile is
answered, and the answer is the mean of the tile probabilities weighted by each
tile's texture (mean gradient magnitude of the gray image, central differences).
Flat tiles (texture below 4.0, sky and walls, the threshold training crops were
selected with) do not count unless every tile of the image is flat. An input
no larger than a tile is answered whole, as before. Nothing is resized.
"""
from __future__ import annotations

import tensorflow as tf

from data_pipeline.crops import DEFAULT_MIN_TEXTURE

CHUNK_TILES = 64  # tiles per model call: bounds memory on large photographs


def tile_starts(length, tile: int):
    """Start offsets of tiles of side `tile` covering `length` evenly (one tile when `length <= tile`); float32
    arithmetic, as `blurnet.classify.spread_starts` (`predict`) does, so both cut the same tiles."""
    length = tf.convert_to_tensor(length, tf.int32)
    count = tf.maximum(1, -(-length // tile))
    span = tf.cast(tf.maximum(length - tile, 0), tf.float32)
    steps = tf.cast(tf.range(count), tf.float32) / tf.cast(tf.maximum(count - 1, 1), tf.float32)
    return tf.cast(tf.round(steps * span), tf.int32)


def cut_tiles(images, tile: int):
    """(batch * n, th, tw, c) tiles of (batch, h, w, c) `images`, image by image, row-major; returns (tiles, n).

    th = min(tile, h), tw = min(tile, w).
    """
    shape = tf.shape(images)
    th, tw = tf.minimum(tile, shape[1]), tf.minimum(tile, shape[2])
    rows = tile_starts(shape[1], tile)[:, None] + tf.range(th)[None, :]  # (n_rows, th)
    cols = tile_starts(shape[2], tile)[:, None] + tf.range(tw)[None, :]  # (n_cols, tw)
    tiles = tf.gather(tf.gather(images, rows, axis=1), cols, axis=3)  # (b, n_rows, th, n_cols, tw, c)
    tiles = tf.transpose(tiles, [0, 1, 3, 2, 4, 5])
    count = tf.shape(rows)[0] * tf.shape(cols)[0]
    return tf.reshape(tiles, tf.stack([shape[0] * count, th, tw, shape[3]])), count


def tile_texture(tiles):
    """Mean gradient magnitude (0..255 scale) of each tile's gray image, central differences: shape (n,)."""
    gray = tf.tensordot(tf.cast(tiles, tf.float32), tf.constant([0.299, 0.587, 0.114]), axes=[[3], [0]])
    padded = tf.pad(gray, [[0, 0], [1, 1], [1, 1]], mode="SYMMETRIC")
    gy = (padded[:, 2:, 1:-1] - padded[:, :-2, 1:-1]) / 2.0
    gx = (padded[:, 1:-1, 2:] - padded[:, 1:-1, :-2]) / 2.0
    return tf.reduce_mean(tf.sqrt(gx * gx + gy * gy), axis=[1, 2])


def _tile_weights(textures, min_texture: float):
    """(batch, n) weights of tiles with (batch, n) `textures`: the texture of a tile at or over `min_texture`, else 0;
    1 for every tile of an image with no such tile. A tile whose texture is not a number (a NaN pixel) weighs 0."""
    used = textures >= min_texture  # False for NaN
    any_used = tf.reduce_any(used, axis=1, keepdims=True)
    return tf.where(any_used, tf.where(used, textures, tf.zeros_like(textures)), tf.ones_like(textures))


def texture_weighted_mean(probabilities, textures, min_texture: float = DEFAULT_MIN_TEXTURE):
    """Mean over axis 1 of (batch, n, classes) `probabilities`, weighted by (batch, n) `textures`;
    tiles under `min_texture` count only when every tile of that image is under it."""
    weights = _tile_weights(textures, min_texture)
    counted = tf.where(weights[..., None] > 0, probabilities, tf.zeros_like(probabilities))  # 0 x NaN would be NaN
    mean = tf.reduce_sum(counted * weights[..., None], axis=1) / tf.reduce_sum(weights, axis=1)[:, None]
    return mean / tf.reduce_sum(mean, axis=1, keepdims=True)


def texture_weighted_median(values, textures, min_texture: float = DEFAULT_MIN_TEXTURE):
    """Per-column weighted median over axis 1 of (batch, n, k) `values`, weights the (batch, n) `textures`;
    tiles under `min_texture` count only when every tile of that image is under it (as `texture_weighted_mean`).
    Robust where a few tiles (a flat patch, a highlight) answer far off."""
    weights = _tile_weights(textures, min_texture)  # (b, n)
    columns = tf.transpose(values, [0, 2, 1])  # (b, k, n)
    order = tf.argsort(columns, axis=-1)
    sorted_values = tf.gather(columns, order, batch_dims=2)
    sorted_weights = tf.gather(tf.broadcast_to(weights[:, None, :], tf.shape(columns)), order, batch_dims=2)
    cumulative = tf.cumsum(sorted_weights, axis=-1)
    half = 0.5 * cumulative[..., -1:]
    first = tf.argmax(tf.cast(cumulative >= half, tf.int32), axis=-1, output_type=tf.int32)  # (b, k)
    return tf.gather(sorted_values, first[..., None], batch_dims=2)[..., 0]


def _predict_in_chunks(predict, tiles, num_classes: int):
    """`predict` over `tiles` CHUNK_TILES at a time (a tf.while_loop, so it works inside tf.function)."""
    total = tf.shape(tiles)[0]

    def body(i, out):
        start = i * CHUNK_TILES
        part = tiles[start:tf.minimum(start + CHUNK_TILES, total)]
        return i + 1, out.write(i, tf.cast(predict(part), tf.float32))

    def answers():
        chunks = -(-total // CHUNK_TILES)
        out = tf.TensorArray(tf.float32, size=chunks, infer_shape=False)
        _, out = tf.while_loop(lambda i, _: i < chunks, body, [tf.constant(0), out])
        return tf.reshape(out.concat(), [total, num_classes])

    # An empty batch never reaches the network (a convolution of an empty batch loses its channel count, and the
    # next one fails): its answer is (0, classes).
    return tf.cond(total > 0, answers, lambda: tf.zeros([0, num_classes], tf.float32))


def answer_by_tiles(predict, images, tile: int, num_classes: int = 4, combine=texture_weighted_mean):
    """(batch, classes) probabilities: `predict` on tiles of `tile` px of `images`, combined by
    `texture_weighted_mean`; an image with no side longer than `tile` is one tile, answered whole.
    `combine=texture_weighted_median` (with `num_classes` the width of `predict`'s output) combines
    other per-tile answers, such as blur parameters."""
    if tile < 1:
        raise ValueError(f"tile must be >= 1 px, got {tile!r}.")
    # One code path for every size (an image no larger than a tile is its own single tile): the
    # SavedModel then holds the model's graph once per view group, not twice.
    images = tf.convert_to_tensor(images, tf.float32)
    batch = tf.shape(images)[0]
    tiles, count = cut_tiles(images, tile)
    probabilities = tf.reshape(_predict_in_chunks(predict, tiles, num_classes), tf.stack([batch, count, num_classes]))
    textures = tf.reshape(tile_texture(tiles), tf.stack([batch, count]))
    return combine(probabilities, textures)
