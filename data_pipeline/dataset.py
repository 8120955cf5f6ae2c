"""`tf.data` pipelines that blur sharp photographs on the fly.

The batches come from `data_pipeline.batches.BlurBatchMaker` (numpy, seeded per
index, so the same seed always gives the same batches). Batches are made in parallel with
`num_parallel_calls=AUTOTUNE` (OpenCV releases the GIL while filtering) and
prefetched.

Elements are `(images, labels)` with images float32 `(batch, size, size, 3)` in
0..255 and labels int32, or `(images, labels, params)` with `with_params=True`,
where params is float32 `(batch, 3)`: `[strength, angle, noise_sigma]` (see
`degrade.BlurParams`).
"""
from __future__ import annotations

import tensorflow as tf

from data_pipeline.batches import STREAMS, BlurBatchMaker, NoiseBank, PipelineConfig, noise_bank  # noqa: F401 (re-exported)
from data_pipeline.sources import Photo


def batch_dataset(make_batch, batch_size: int, image_size: int, start: int = 0, num_batches: int | None = None,
                  with_params: bool = False) -> tf.data.Dataset:
    """A `tf.data.Dataset` of `make_batch(start)`, `make_batch(start + 1)`, ... (`num_batches` of them, or forever).

    `make_batch(index)` returns images `(batch_size, image_size, image_size, 3)`
    float32, labels int32 and params `(batch_size, 3)` float32; batches are made in
    parallel, kept in order, and prefetched.
    """
    end = start + num_batches if num_batches is not None else 2**62
    b, s = batch_size, image_size

    def produce(index):
        images, labels, params = tf.numpy_function(make_batch, [index], [tf.float32, tf.int32, tf.float32], stateful=False)
        images.set_shape((b, s, s, 3))
        labels.set_shape((b,))
        params.set_shape((b, 3))
        return (images, labels, params) if with_params else (images, labels)

    ds = tf.data.Dataset.range(start, end).map(produce, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE)


def maker_dataset(maker: BlurBatchMaker, start: int = 0, num_batches: int | None = None, with_params: bool = False) -> tf.data.Dataset:
    """Batches `start, start+1, ...` of a batch maker (`num_batches` of them, or forever) as a `tf.data.Dataset`."""
    return batch_dataset(maker.make_batch, maker.config.batch_size, maker.config.image_size, start, num_batches, with_params)


def training_dataset(photos: list[Photo], config: PipelineConfig, worker: int = 0, start: int = 0) -> tf.data.Dataset:
    """Endless, augmented, class-balanced training batches (per-worker random streams)."""
    return maker_dataset(BlurBatchMaker(photos, config, "train", worker=worker), start=start)


def evaluation_dataset(photos: list[Photo], config: PipelineConfig, split: str, num_images: int, with_params: bool = False) -> tf.data.Dataset:
    """A fixed set of `num_images` (rounded up to whole batches) for "val" or "test", no augmentation."""
    if split not in ("val", "test"):
        raise ValueError(f"split must be 'val' or 'test', got {split!r}.")
    if num_images < 1:
        raise ValueError(f"num_images must be >= 1, got {num_images!r}.")
    num_batches = -(-num_images // config.batch_size)
    return maker_dataset(BlurBatchMaker(photos, config, split), num_batches=num_batches, with_params=with_params)
