"""`FitConfig`: every setting of a training run, with the CPU and GPU recipes.

Importing this module does not import TensorFlow: the command line takes its
`blurnet fit` defaults from `FitConfig`'s fields.
"""
from __future__ import annotations

import dataclasses
import math

from blurnet.backbones import DEFAULT_BACKBONE, UNFREEZE_CHOICES, get_backbone_spec
from data_pipeline.augment import AugmentConfig
from data_pipeline.classes import MIN_IMAGE_SIDE, BlurRanges
from data_pipeline.degrade import PsfFamilies
from data_pipeline.quality import MIN_HIGH_FREQUENCY_RATIO

DEFAULT_NAME = "blurnet-densenet121"


@dataclasses.dataclass
class FitConfig:
    """Settings of `blurnet fit`. `None` fields are filled by `resolve` from the recipe.

    `spectrum=True` (the default, with any weights) adds the spectral branch
    beside the backbone (`blurnet.spectrum`): each PSF leaves its own print in
    the power spectrum, which a from-scratch DenseNet121 learns from faster
    than from the high-pass channels (`--highpass`, off by default).
    `--no-spectrum` gives the paper's plain DenseNet121.

    `parameter_head=True` trains the blur-parameter head jointly with the
    classifier (`blurnet.parameter_head`: sigma, motion length and angle,
    defocus radius), its loss weighted `parameter_loss_weight`; the export then
    has an `estimate` endpoint. `None` (the default) means on, except where
    nothing would train it: off for a labelled folder (no known parameters), and
    as the `--init-from` export has it when `epochs_finetune=0` (a re-export);
    `blurnet.train.resolve_parameter_head` decides. `--init-from` an export
    without the head starts the head from random weights.
    `freeze_classifier=True` (with `init_from`) trains the head alone for
    `epochs_finetune` epochs at `lr_finetune`: every layer the class
    probabilities depend on keeps the export's weights, so the classifier
    answers exactly as before; the best checkpoint is the one of lowest
    validation parameter loss.

    CPU recipe (no GPU found): 64 px crops, batch 32, 1 + 10 epochs of 60 steps,
    256 validation and 512 test images: about 9 minutes on 2 cores from scratch.
    `test_time_views` (default 8): the export and the held-out figures average
    the model over that many flipped/rotated views of each image
    (`blurnet.views`); 1 is the plain single pass, 8 times cheaper.

    `psf_families` names the blur shapes generated samples draw
    (`data_pipeline.degrade.PSF_FAMILY_PRESETS`): "realistic" (default) or
    "classic" (straight streaks, uniform disks, Gaussians, perfectly sharp);
    the camera steps are the same for both. `palette_share` is the share of
    samples saved as dithered palette images (GIF-like, 24 to 128 colours;
    `data_pipeline.augment.AugmentConfig.palette_probability`), the rest being
    JPEG or left as they are. `blur_ranges` widens (or narrows) the blur
    parameters the generated samples draw: a mapping of some of
    `data_pipeline.classes.BlurRanges`' fields to `(low, high)` (pixels; noise on the 0..255 scale),
    e.g. `{"motion_length": (5, 40)}`; None (default) keeps the SPEC's ranges.
    The export's `blurnet.json` records the ranges it trained with under
    `blur_ranges`, and `blurnet report` tests on them. `generated_scenes` adds that many
    dead-leaves scenes (`data_pipeline.scenes`) to the training photographs;
    validation and the held-out test stay photographs.

    `freeze_batchnorm=True` keeps the BatchNormalization layers of the
    unfrozen blocks as they are during the fine-tune (moving statistics,
    scale and offset; inference mode); `False` lets them train. `None`
    resolves to True with ImageNet weights (the Keras advice for fine-tuning)
    and to False from scratch or from an `--init-from` export.

    `epochs_finetune=0` with `init_from` trains nothing: it re-evaluates and
    re-exports that export (e.g. with other `test_time_views`), keeping its
    training history in `blurnet.json` under `started_from`.

    `deterministic=True` seeds Python, NumPy, TensorFlow and Keras with `seed`
    and turns on TensorFlow's op determinism before anything is built, so that
    a rerun on the same machine repeats the weights and held-out figures
    (`benchmarks/deterministic.py` measures the cost and checks the repeat).

    GPU recipe: 128 px crops, batch 64, 3 + 40 epochs of 400 steps, 1,024
    validation and 2,048 test images.
    """

    data: str | None = None
    out: str = "saved_models"
    name: str = DEFAULT_NAME
    backbone: str = DEFAULT_BACKBONE
    weights: str | None = "imagenet"
    image_size: int | None = None
    batch_size: int | None = None
    epochs_head: int | None = None
    epochs_finetune: int | None = None
    steps_per_epoch: int | None = None
    val_images: int | None = None
    test_images: int | None = None
    unfreeze_from: str = "auto"
    freeze_batchnorm: bool | None = None
    lr_head: float = 1e-3
    lr_finetune: float | None = None
    highpass: bool = False
    spectrum: bool = True
    parameter_head: bool | None = None
    parameter_loss_weight: float = 1.0
    freeze_classifier: bool = False
    init_from: str | None = None
    test_time_views: int = 8
    min_sharpness: float = MIN_HIGH_FREQUENCY_RATIO
    psf_families: str = "realistic"
    palette_share: float = AugmentConfig.palette_probability
    blur_ranges: dict | None = None
    generated_scenes: int = 0
    seed: int = 0
    resume: bool = False
    run_dir: str = "runs"
    patience: int = 8
    strategy: str = "auto"
    cpu_devices: int = 1
    mixed_precision: bool = False
    jit: bool = False
    deterministic: bool = False

    RECIPES = {
        "cpu": dict(image_size=64, batch_size=32, epochs_head=1, epochs_finetune=10, steps_per_epoch=60, val_images=256, test_images=512),
        "gpu": dict(image_size=128, batch_size=64, epochs_head=3, epochs_finetune=40, steps_per_epoch=400, val_images=1024, test_images=2048),
    }

    def resolve(self, recipe: str) -> "FitConfig":
        """A copy with every `None` field taken from `recipe` ("cpu" or "gpu"), validated."""
        if recipe not in self.RECIPES:
            raise ValueError(f"recipe must be one of {sorted(self.RECIPES)}, got {recipe!r}.")
        values = dataclasses.asdict(self)
        for key, value in self.RECIPES[recipe].items():
            if values[key] is None:
                values[key] = value
        pretrained = values["weights"] is not None
        if values["unfreeze_from"] == "auto":
            # Only a backbone with transition layers (DenseNet121: pool2..pool4) is fine-tuned from pool3.
            transitions = get_backbone_spec(values["backbone"]).transitions
            values["unfreeze_from"] = "pool3" if pretrained and "pool3" in transitions else "all"
        if values["lr_finetune"] is None:
            values["lr_finetune"] = 1e-4 if pretrained else 1e-3
        if values["freeze_batchnorm"] is None:
            values["freeze_batchnorm"] = pretrained
        resolved = FitConfig(**values)
        resolved.validate()
        return resolved

    def augment(self) -> AugmentConfig:
        """The augmentation of the generated training samples: the defaults, with `palette_share` palette images."""
        return AugmentConfig.with_palette_share(self.palette_share)

    def ranges(self) -> BlurRanges:
        """The blur ranges of the generated samples: the defaults, with the fields `blur_ranges` names replaced."""
        return BlurRanges.from_dict(self.blur_ranges or {})

    def validate(self) -> None:
        """`ValueError` echoing the first bad setting."""
        from blurnet.distribute import STRATEGIES  # these two import TensorFlow: only when validating
        from blurnet.views import check_views

        get_backbone_spec(self.backbone)  # ValueError echoing an unknown backbone
        if self.name in ("", ".", "..") or "/" in self.name or "\\" in self.name:
            raise ValueError(f"name must be a folder name (no '/', '\\', '.' or '..'), got {self.name!r}.")
        for key in ("lr_head", "lr_finetune"):
            value = getattr(self, key)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ValueError(f"{key} must be > 0, got {value!r}.")
        if self.patience < 0:
            raise ValueError(f"patience must be >= 0, got {self.patience!r}.")
        if self.unfreeze_from not in UNFREEZE_CHOICES:
            raise ValueError(f"unfreeze_from must be one of {UNFREEZE_CHOICES}, got {self.unfreeze_from!r}.")
        for key in ("image_size", "batch_size", "steps_per_epoch", "val_images", "test_images"):
            if getattr(self, key) is not None and getattr(self, key) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)!r}.")
        if self.image_size is not None and self.image_size < MIN_IMAGE_SIDE:
            raise ValueError(f"image_size must be >= {MIN_IMAGE_SIDE}, got {self.image_size!r}.")
        for key in ("epochs_head", "epochs_finetune"):
            if getattr(self, key) is not None and getattr(self, key) < 0:
                raise ValueError(f"{key} must be >= 0, got {getattr(self, key)!r}.")
        check_views(self.test_time_views)
        for key in ("parameter_loss_weight", "min_sharpness"):
            if not (math.isfinite(getattr(self, key)) and getattr(self, key) >= 0):
                raise ValueError(f"{key} must be a finite number >= 0, got {getattr(self, key)!r}.")
        if not 0 <= self.seed < 2**32:
            raise ValueError(f"seed must be in 0..2**32 - 1, got {self.seed!r}.")
        if self.init_from is None and self.epochs_finetune == 0 and (self.epochs_head == 0 or self.weights is None):
            stage_1 = "epochs_head is 0" if self.epochs_head == 0 else "stage 1 is skipped with weights none (it trains a head on a pretrained backbone)"
            raise ValueError(f"epochs_finetune is 0, {stage_1} and there is no init_from: nothing would train, and the "
                             f"export would hold untrained weights.")
        PsfFamilies.named(self.psf_families)  # ValueError echoing an unknown preset
        self.augment()  # ValueError echoing a palette share the JPEG share leaves no room for
        self.ranges()  # ValueError echoing an unknown field or an empty or out-of-domain range
        if self.generated_scenes < 0:
            raise ValueError(f"generated_scenes must be >= 0, got {self.generated_scenes!r}.")
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {self.strategy!r}.")
        if self.cpu_devices < 1:
            raise ValueError(f"cpu_devices must be >= 1, got {self.cpu_devices!r}.")
        if self.freeze_classifier and (self.init_from is None or self.parameter_head is False):
            raise ValueError(f"freeze_classifier trains the parameter head of an --init-from export alone; it needs "
                             f"init_from and the head, got init_from={self.init_from!r}, parameter_head={self.parameter_head!r}.")
        if self.freeze_batchnorm is False and self.weights is not None:
            raise ValueError(f"a pretrained backbone runs in inference mode (its BatchNormalization statistics stay "
                             f"ImageNet's); --train-batchnorm needs --weights none, got weights={self.weights!r}.")
        if self.init_from is not None and self.weights is not None:
            raise ValueError(f"--init-from takes all weights from the export; use it with --weights none, got weights={self.weights!r}.")
        if self.highpass and self.weights is not None:
            raise ValueError(f"highpass needs weights=None (six input channels), got weights={self.weights!r}.")
