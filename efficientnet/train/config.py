"""`RunConfig`: the single, frozen source of truth for one training / evaluation run.

Recipes (`efficientnet.train.recipes`) are named sets of field values; command-line flags only
override fields. Nothing below `efficientnet.train` reads flags: it receives this config (or the
`DataConfig` derived from it) explicitly.
"""

from __future__ import annotations

import dataclasses
import math

MODES = ("train", "eval", "train_and_eval")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
OPTIMIZERS = ("rmsprop", "momentum", "sgd")
LR_SCHEDULES = ("exponential", "linear", "cosine", "constant")
XLA_CHOICES = ("auto", "on", "off")


class ConfigError(ValueError):
    """A bad setting, with a message meant for the person who typed it."""


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Every setting of a run; field names match the command-line flags."""

    # What and where.
    model_name: str = "efficientnet-b0"
    recipe: str = "tpu-rmsprop"
    mode: str = "train_and_eval"
    data_dir: str | None = None
    model_dir: str | None = None
    export_dir: str | None = None
    use_synthetic_data: bool = False

    # Sizes and schedule of the run (tensorflow/tpu and seed 002 defaults: B0, 350 epochs, 8 x 256).
    train_batch_size: int = 2048
    eval_batch_size: int = 1024
    train_steps: int = 218949
    iterations_per_loop: int = 1251
    steps_per_eval: int = 6255
    num_train_images: int = 1281167
    num_eval_images: int = 50000
    num_label_classes: int = 1000
    image_size: int | None = None  # None: the spec's train/eval resolutions

    # Optimiser and learning rate. The learning rate is base_learning_rate * global batch /
    # lr_reference_batch (REFERENCE.md section 4: 0.016 x batch / 256 for the TPU recipe).
    optimizer: str = "rmsprop"
    base_learning_rate: float = 0.016
    lr_reference_batch: int = 256
    lr_schedule: str = "exponential"
    lr_decay_factor: float = 0.97
    lr_decay_epochs: float = 2.4
    warmup_epochs: float = 5.0
    min_learning_rate: float = 0.0
    momentum: float = 0.9
    rmsprop_decay: float = 0.9
    rmsprop_epsilon: float = 1e-3
    nesterov: bool = False
    clip_global_norm: float = 0.0  # 0: no clipping

    # Regularisation.
    weight_decay: float = 1e-5  # L2 on weights with ndim > 1 (no BN parameters, no biases)
    label_smoothing: float = 0.1
    moving_average_decay: float = 0.9999  # 0: no EMA
    dropout_rate: float | None = None  # None: from the model spec
    drop_connect_rate: float | None = None

    # Input pipeline (passed on to efficientnet.data.config.DataConfig).
    augment_name: str | None = None
    randaug_num_layers: int = 2
    randaug_magnitude: int = 10
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    resize_method: str | None = None
    shuffle_buffer: int | None = None
    cache: bool = False
    crop_padding: int | None = None  # None: the spec's (32); eval crop = size / (size + padding)
    min_crop_area: float = 0.08  # smallest random-crop area fraction (Inception crop: 0.08)

    # Numerics and compilation.
    precision: str = "float32"
    xla: str = "auto"  # auto: on for GPUs, off on CPU (XLA on CPU is ~8x slower, REFERENCE.md 8)
    seed: int = 0
    deterministic: bool = False

    # Checkpoints and evaluation.
    keep_checkpoint_max: int = 5
    save_checkpoints_steps: int = 0  # 0: after every loop
    eval_watch: bool = False  # mode=eval: evaluate every new checkpoint until train_steps
    eval_timeout: float = 3600.0  # eval_watch: give up after this many seconds without one
    # Before each evaluation and the last checkpoint, recompute the BN moving statistics of the
    # evaluated weights over this many training batches (pycls' precise BN); 0: off.
    precise_bn_batches: int = 0

    # Devices.
    num_cpu_devices: int = 0  # >1: MirroredStrategy over that many logical CPU devices
    rank_table: str | None = None  # seed 002 rank table + RANK_ID -> MultiWorkerMirroredStrategy

    # Transfer learning (efficientnet.train.restore).
    restore_path: str | None = None
    restore_exclude: tuple[str, ...] = ()
    restore_prefer_ema: bool = True
    freeze_pattern: str | None = None

    def replace(self, **changes) -> RunConfig:
        """A copy with `changes` applied (and validated)."""
        return dataclasses.replace(self, **changes)

    def __post_init__(self):
        if isinstance(self.restore_exclude, list):
            object.__setattr__(self, "restore_exclude", tuple(self.restore_exclude))

    # Derived quantities.
    @property
    def steps_per_epoch(self) -> float:
        return self.num_train_images / self.train_batch_size

    @property
    def train_epochs(self) -> int:
        return max(1, math.ceil(self.train_steps / max(self.steps_per_epoch, 1e-9)))

    @property
    def peak_learning_rate(self) -> float:
        return self.base_learning_rate * self.train_batch_size / self.lr_reference_batch

    @property
    def checkpoint_interval(self) -> int:
        return self.save_checkpoints_steps or self.iterations_per_loop

    def validate(self) -> RunConfig:
        """Checks values that need no model or data; raises `ConfigError` naming the flag."""
        _choice("mode", self.mode, MODES)
        _choice("precision", self.precision, PRECISIONS)
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        _choice("xla", self.xla, XLA_CHOICES)
        for name in ("train_batch_size", "eval_batch_size", "train_steps", "iterations_per_loop",
                     "num_train_images", "num_eval_images", "lr_reference_batch",
                     "keep_checkpoint_max"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name} must be at least 1, got {getattr(self, name)}")
        if self.num_label_classes < 2:
            raise ConfigError(
                f"--num_label_classes must be at least 2, got {self.num_label_classes}")
        if self.mode == "train_and_eval" and self.steps_per_eval < 1:
            raise ConfigError(f"--steps_per_eval must be at least 1, got {self.steps_per_eval}")
        if self.image_size is not None and self.image_size < 16:
            raise ConfigError(f"--image_size must be at least 16 pixels, got {self.image_size}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(f"--label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if not 0.0 <= self.moving_average_decay < 1.0:
            raise ConfigError(
                f"--moving_average_decay must be in [0, 1), got {self.moving_average_decay}")
        if self.weight_decay < 0:
            raise ConfigError(f"--weight_decay must be >= 0, got {self.weight_decay}")
        if self.base_learning_rate <= 0:
            raise ConfigError(
                f"--base_learning_rate must be positive, got {self.base_learning_rate}")
        if self.save_checkpoints_steps < 0:
            raise ConfigError("--save_checkpoints_steps must be >= 0 (0: after every loop)")
        if self.num_cpu_devices < 0:
            raise ConfigError("--num_cpu_devices must be >= 0")
        if self.precise_bn_batches < 0:
            raise ConfigError(
                f"--precise_bn_batches must be >= 0 (0: off), got {self.precise_bn_batches}")
        if not self.model_dir:
            raise ConfigError("--model_dir is required: where checkpoints and logs go")
        if not self.use_synthetic_data and not self.data_dir:
            raise ConfigError(
                "--data_dir is required (a folder with train-* and validation-* TFRecords); "
                "or pass --use_synthetic_data")
        return self


def _choice(name: str, value, choices) -> None:
    if value not in choices:
        raise ConfigError(f"--{name}={value!r} is not one of: {', '.join(choices)}")
