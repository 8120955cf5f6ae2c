"""The backbones blurnet can be built on: one `BackboneSpec` per `keras.applications` model.

`BACKBONES` is the single table that the command line's `--backbone` choices,
`FitConfig`, `blurnet.model.create_model` and the tests read. Adding a backbone
means adding one entry here.

This module imports nothing heavy: a spec names its `keras.applications`
constructor and preprocessing family, and resolves them (importing Keras) only
when `constructor` or `preprocess_input` is used, so the command line can list
the choices without loading TensorFlow.
"""
from __future__ import annotations

import dataclasses
import importlib


@dataclasses.dataclass(frozen=True)
class BackboneSpec:
    """One `keras.applications` backbone.

    `application`: the constructor's name in `keras.applications` (e.g. "DenseNet121").
    `family`: the `keras.applications` module holding its `preprocess_input` (e.g. "densenet").
    `imagenet_file`: the Keras ImageNet weights file without the top, as cached in `~/.keras/models/`.
    `transitions`: layer-name prefixes of the transition layers that fine-tuning may start
    from (`blurnet.model.set_trainable_from`); empty where the backbone has none.
    `pretrained_input_shape`: the input shape its ImageNet weights must be loaded at, where
    `keras.applications` refuses to load them for inputs of any size (the model is then rebuilt
    at any size with those weights); None where no such shape is needed.
    """

    name: str
    application: str
    family: str
    imagenet_file: str
    transitions: tuple[str, ...] = ()
    pretrained_input_shape: tuple[int, int, int] | None = None

    @property
    def constructor(self):
        """The `keras.applications` constructor (imports Keras)."""
        return getattr(importlib.import_module("keras").applications, self.application)

    @property
    def preprocess_input(self):
        """The family's `keras.applications.<family>.preprocess_input` (imports Keras)."""
        return importlib.import_module(f"keras.applications.{self.family}").preprocess_input


BACKBONES: dict[str, BackboneSpec] = {
    spec.name: spec
    for spec in (
        BackboneSpec(
            name="densenet121",
            application="DenseNet121",
            family="densenet",
            imagenet_file="densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5",
            transitions=("pool2", "pool3", "pool4"),
        ),
        BackboneSpec(
            name="mobilenetv2",
            application="MobileNetV2",
            family="mobilenet_v2",
            imagenet_file="mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5",
            pretrained_input_shape=(224, 224, 3),
        ),
        BackboneSpec(
            name="resnet50",
            application="ResNet50",
            family="resnet",
            imagenet_file="resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
        ),
    )
}

DEFAULT_BACKBONE = "densenet121"

#: Every transition layer some backbone has, in registry order, then "all" (the whole backbone).
UNFREEZE_CHOICES: tuple[str, ...] = tuple(dict.fromkeys(t for spec in BACKBONES.values() for t in spec.transitions)) + ("all",)


def backbone_names() -> tuple[str, ...]:
    """The registered backbone names, in registry order."""
    return tuple(BACKBONES)


def get_backbone_spec(name: str) -> BackboneSpec:
    """The `BackboneSpec` called `name`; `ValueError` echoing it and listing the choices otherwise."""
    try:
        return BACKBONES[name]
    except (KeyError, TypeError):
        raise ValueError(f"backbone must be one of {backbone_names()}, got {name!r}.") from None
