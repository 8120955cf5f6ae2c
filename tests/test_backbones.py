"""The backbone registry: one `BackboneSpec` per backbone, read by the model, `FitConfig` and the command line."""
import dataclasses
import subprocess
import sys

import keras
import pytest

from blurnet.backbones import BACKBONES, DEFAULT_BACKBONE, UNFREEZE_CHOICES, BackboneSpec, backbone_names, get_backbone_spec
from blurnet.config import FitConfig

# Known answers, written out here so that a wrong registry entry fails.
EXPECTED = {
    "densenet121": (keras.applications.DenseNet121, keras.applications.densenet.preprocess_input, "densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    "mobilenetv2": (keras.applications.MobileNetV2, keras.applications.mobilenet_v2.preprocess_input, "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"),
    "resnet50": (keras.applications.ResNet50, keras.applications.resnet.preprocess_input, "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"),
}


def test_registry_names_and_order():
    assert backbone_names() == ("densenet121", "mobilenetv2", "resnet50")
    assert DEFAULT_BACKBONE == "densenet121" == FitConfig().backbone
    assert all(spec.name == name and isinstance(spec, BackboneSpec) for name, spec in BACKBONES.items())
    assert UNFREEZE_CHOICES == ("pool2", "pool3", "pool4", "all")


@pytest.mark.parametrize("name", list(BACKBONES))
def test_spec_resolves_its_keras_constructor_preprocessing_and_weights_file(name):
    constructor, preprocess, imagenet_file = EXPECTED[name]
    spec = get_backbone_spec(name)
    assert spec.constructor is constructor
    assert spec.preprocess_input is preprocess
    assert spec.imagenet_file == imagenet_file
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.name = "other"


@pytest.mark.parametrize("name", list(BACKBONES))
def test_transitions_are_the_backbones_own_layers(name):
    spec = get_backbone_spec(name)
    names = [layer.name for layer in spec.constructor(include_top=False, weights=None, input_shape=(None, None, 3)).layers]
    for boundary in UNFREEZE_CHOICES[:-1]:
        assert any(n.startswith(boundary + "_") for n in names) == (boundary in spec.transitions), (name, boundary)


def test_unknown_backbone_echoes_the_name_and_lists_the_choices():
    with pytest.raises(ValueError, match=r"backbone must be one of \('densenet121', 'mobilenetv2', 'resnet50'\), got 'vgg16'"):
        get_backbone_spec("vgg16")
    with pytest.raises(ValueError, match="got 'vgg16'"):
        FitConfig(backbone="vgg16").resolve("cpu")


def test_auto_unfreeze_follows_the_transitions():
    assert FitConfig(backbone="densenet121").resolve("cpu").unfreeze_from == "pool3"
    assert FitConfig(backbone="resnet50").resolve("cpu").unfreeze_from == "all"
    assert FitConfig(backbone="densenet121", weights=None).resolve("cpu").unfreeze_from == "all"


def test_command_line_choices_come_from_the_registry():
    from blurnet.cli import main

    params = {p.name: p for p in main.commands["fit"].params}
    assert tuple(params["backbone"].type.choices) == backbone_names()
    assert tuple(params["unfreeze_from"].type.choices) == ("auto",) + UNFREEZE_CHOICES


def test_registry_config_and_command_line_import_without_keras():
    code = "import sys, blurnet.backbones, blurnet.config, blurnet.cli; print('keras' in sys.modules, 'tensorflow' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "False"]
