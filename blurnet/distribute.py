"""Data-parallel training with TensorFlow's own `tf.distribute` strategies, and precision.

- `auto`: `MirroredStrategy` when more than one GPU (or logical CPU device) is
  visible, else TensorFlow's default strategy.
- `mirrored`: `MirroredStrategy` over all local GPUs, or over the logical CPU
  devices made by `configure_cpu_devices` when there is no GPU (tests, benchmarks).
- `multiworker`: `MultiWorkerMirroredStrategy` across machines, configured by the
  `TF_CONFIG` environment variable (see the README).

`--batch-size` is the **global** batch: each of the N replicas gets batch/N.
Learning rates are given for a global batch of 32 and scaled linearly
(`scaled_learning_rate`).
"""
from __future__ import annotations

import json
import os

import keras
import tensorflow as tf

STRATEGIES = ("auto", "mirrored", "multiworker")
REFERENCE_BATCH = 32


def configure_cpu_devices(count: int) -> None:
    """Split the CPU into `count` logical devices. Must run before TensorFlow starts its runtime."""
    if count < 1:
        raise ValueError(f"cpu_devices must be >= 1, got {count!r}.")
    if count == 1:
        return
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * count)
    except RuntimeError as error:
        raise RuntimeError(f"cannot split the CPU into {count} devices once TensorFlow has started ({error}).") from None


def create_strategy(name: str = "auto") -> tf.distribute.Strategy:
    """The `tf.distribute` strategy called `name` (see the module docstring)."""
    if name not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {name!r}.")
    if name == "multiworker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError("strategy 'multiworker' needs the TF_CONFIG environment variable (see the README).")
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
    if name == "mirrored" or len(devices) > 1:
        return tf.distribute.MirroredStrategy(devices=devices)
    return tf.distribute.get_strategy()


def _tf_config() -> dict:
    return json.loads(os.environ.get("TF_CONFIG", "{}") or "{}")


def worker_index() -> int:
    """This process's task index in `TF_CONFIG` (0 when there is none)."""
    return int(_tf_config().get("task", {}).get("index", 0))


def is_chief() -> bool:
    """Whether this process writes the export: worker 0 (or a 'chief' task), or no TF_CONFIG."""
    config = _tf_config()
    task = config.get("task", {})
    if "chief" in config.get("cluster", {}):
        return task.get("type") == "chief"
    return int(task.get("index", 0)) == 0


def set_precision(mixed: bool, device: str) -> str:
    """Set Keras' global dtype policy: float32, or mixed float16 on GPU / bfloat16 on CPU."""
    policy = "float32" if not mixed else ("mixed_float16" if device == "gpu" else "mixed_bfloat16")
    keras.mixed_precision.set_global_policy(policy)
    return policy


def scaled_learning_rate(learning_rate: float, global_batch: int) -> float:
    """Linear scaling rule: `learning_rate` is for a global batch of 32."""
    return learning_rate * global_batch / REFERENCE_BATCH


def shard_off(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """Turn off tf.distribute's auto-sharding: each worker already draws its own random stream."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return dataset.with_options(options)


def prepare_for_multiworker(model: keras.Model, strategy: tf.distribute.Strategy) -> None:
    """Work around two Keras 3 incompatibilities with `MultiWorkerMirroredStrategy`.

    Both are in Keras' TensorFlow trainer (checked with Keras 3.15) and only
    affect multi-worker runs; other strategies are left alone.

    1. Each step's loss and metrics are reduced with
       `strategy.reduce("MEAN", v, axis=0)`, which fails on scalars ("Invalid
       reduction dimension 0 for input with 0 dimensions",
       tensorflow/tensorflow#72388). The patched reduction uses `axis=None` for
       scalars, which is the same mean over replicas.
    2. The first-batch build (`_maybe_symbolic_build`) reduces the whole `(x, y)`
       tuple in one `strategy.reduce` call, which multi-worker strategies refuse
       ("Attempt to convert a value (PerReplica...) to a Tensor"). The build only
       needs the batch's shapes, so each tensor is reduced separately.
    """
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return
    from keras.src import tree
    from keras.src.backend.tensorflow import trainer as tf_trainer

    original = getattr(tf_trainer.reduce_per_replica, "__wrapped__", tf_trainer.reduce_per_replica)

    def reduce_per_replica(values, strategy, reduction):
        if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and reduction in ("auto", "mean"):
            def mean(v):
                local = strategy.experimental_local_results(v)[0] if isinstance(v, tf.distribute.DistributedValues) else v
                return strategy.reduce("MEAN", v, axis=None if local.shape.rank == 0 else 0)

            return tree.map_structure(mean, values)
        return original(values, strategy, reduction)

    reduce_per_replica.__wrapped__ = original
    tf_trainer.reduce_per_replica = reduce_per_replica

    def maybe_symbolic_build(iterator=None, data_batch=None):
        if iterator is not None:
            for _, _, it in iterator:
                batch = next(it)
                data_batch = tree.map_structure(
                    lambda v: strategy.reduce("MEAN", v, axis=None) if isinstance(v, tf.distribute.DistributedValues) else v,
                    batch,
                )
                break
        with strategy.scope():
            model._symbolic_build(data_batch=data_batch)

    model._maybe_symbolic_build = maybe_symbolic_build
