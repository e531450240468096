"""The experiment tree: nested frozen dataclasses, every field's bounds and help in one place.

    Experiment
      model      ModelConfig      which network, its head and resolution
      data       DatasetConfig    where the data is and how the input pipeline treats it
      optimizer  OptimizerConfig  optimizer, weight decay, label smoothing, weight EMA
      schedule   ScheduleConfig   learning rate and its schedule
      train      TrainConfig      mode, directories, batch sizes, steps, numerics, checkpoints
      transfer   TransferConfig   initial weights from another run or checkpoint, frozen layers

Field names are the command-line flag names (tensorflow/tpu's where it has one) and are unique
across the tree, so `python -m efficientnet.main --train_batch_size=256` overrides
`experiment.train.train_batch_size` and `Experiment.override(train_batch_size=256)` does the same
in Python. Each field carries its help text and its check (`Check`); a section validates its
fields when it is built, so every config that exists is within bounds, and every float is finite.
`Experiment.validate()` adds what only a runnable experiment needs (a model_dir, data or
--use_synthetic_data). The input pipeline's `DataConfig` is checked by the same field checks.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing

MODES = ("train", "eval", "train_and_eval")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
OPTIMIZERS = ("rmsprop", "momentum", "sgd")
LR_SCHEDULES = ("exponential", "linear", "cosine", "constant")
XLA_CHOICES = ("auto", "on", "off")
AUGMENT_NAMES = (None, "autoaugment", "randaugment")
RESIZE_METHODS = ("bicubic", "bicubic_tf1", "bilinear")
DTYPES = ("float32", "float16", "bfloat16")


class ConfigError(ValueError):
    """A bad setting, with a message meant for the person who typed it."""


@dataclasses.dataclass(frozen=True)
class Check:
    """Bounds of one field: `low <= value` (or `<` when `low_open`), the same for `high`, or one
    of `choices`. None (where the field allows it) always passes; floats must be finite."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple | None = None
    note: str = ""

    def __call__(self, name: str, value) -> None:
        if value is None:
            return
        suffix = f" ({self.note})" if self.note else ""
        if self.choices is not None:
            if value not in self.choices:
                shown = ", ".join("none" if c is None else str(c) for c in self.choices)
                raise ConfigError(f"--{name}={value!r} is not one of: {shown}")
            return
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"--{name} must be a finite number, got {value}{suffix}")
        too_low = self.low is not None and (value <= self.low if self.low_open
                                            else value < self.low)
        too_high = self.high is not None and (value >= self.high if self.high_open
                                              else value > self.high)
        if not (too_low or too_high):
            return
        if self.high is None and not self.low_open:
            bound = "at least 1" if self.low == 1 else f">= {self.low:g}"
            raise ConfigError(f"--{name} must be {bound}, got {value}{suffix}")
        if self.high is None:
            raise ConfigError(f"--{name} must be greater than {self.low:g}, got {value}{suffix}")
        interval = (f"{'(' if self.low_open else '['}{self.low:g}, "
                    f"{self.high:g}{')' if self.high_open else ']'}")
        raise ConfigError(f"--{name} must be in {interval}, got {value}{suffix}")


def at_least(low, note: str = "") -> Check:
    return Check(low=low, note=note)


def one_of(choices, note: str = "") -> Check:
    return Check(choices=tuple(choices), note=note)


FINITE = Check()


def setting(default, help: str, check: Check = FINITE):  # noqa: A002 (the flag's help)
    """A field of the tree: its default, its flag help (the default is appended by the flag
    module, never typed here) and its check."""
    if isinstance(default, (list, dict, set)):
        raise TypeError("mutable defaults: use a tuple")
    return dataclasses.field(default=default, metadata={"help": help, "check": check})


def _check_fields(config) -> None:
    """Runs every field's check (`Check` in its metadata, else the tree's check of that name)."""
    for field in dataclasses.fields(config):
        check = field.metadata.get("check") or _TREE_CHECKS.get(field.name)
        if check is not None:
            check(field.name, getattr(config, field.name))


def _tuple(value) -> tuple:
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return tuple(value)


def _augment(value):
    """'none' / '' mean no augmentation; names are case-insensitive."""
    if not isinstance(value, str):
        return value
    value = value.lower()
    return None if value in ("", "none") else value


class _Section:
    """Base of the tree's sections: checks its fields when built."""

    def __post_init__(self):
        _check_fields(self)


@dataclasses.dataclass(frozen=True)
class ModelConfig(_Section):
    """Which network is trained: a name of the model zoo, its head and resolution."""

    model_name: str = setting(
        "efficientnet-b0", "Model of the zoo (efficientnet-b0..l2, -lite*, -edgetpu-*, "
        "-condconv-*, efficientnetv2-*, se-resnext50).")
    num_label_classes: int = setting(
        1000, "Classes of the head; 1001 keeps the background label 0.", at_least(2))
    image_size: int | None = setting(
        None, "Train and eval resolution (default: the model's).", at_least(16))
    dropout_rate: float | None = setting(
        None, "Dropout before the head (default: the model's).", Check(0.0, 1.0, high_open=True))
    drop_connect_rate: float | None = setting(
        None, "Drop-connect / stochastic depth rate (default: the model's).",
        Check(0.0, 1.0, high_open=True))


@dataclasses.dataclass(frozen=True)
class DatasetConfig(_Section):
    """Where the data is, its size, and what the input pipeline does to it."""

    data_dir: str | None = setting(None, "Folder with train-* and validation-* TFRecord shards.")
    use_synthetic_data: bool = setting(
        False, "Random images instead of --data_dir (smoke tests, speed).")
    num_train_images: int = setting(1281167, "Images per training epoch.", at_least(1))
    num_eval_images: int = setting(
        50000, "Validation images (synthetic eval size; real eval reads every record).",
        at_least(1))
    augment_name: str | None = setting(
        None, "Augmentation: autoaugment or randaugment (default none); runs on whole batches, "
        "XLA-compiled once at start.", one_of(AUGMENT_NAMES))
    randaug_num_layers: int = setting(2, "RandAugment N.", at_least(0))
    randaug_magnitude: int = setting(10, "RandAugment M.", Check(0, 30))
    mixup_alpha: float = setting(0.0, "Mixup alpha; 0 = off.", at_least(0.0))
    cutmix_alpha: float = setting(0.0, "CutMix alpha; 0 = off.", at_least(0.0))
    resize_method: str | None = setting(
        None, "Image resize: bicubic (TF2), bicubic_tf1 (exact TF1 ResizeBicubic, for TF1 "
        "checkpoints) or bilinear (default: bicubic).", one_of((None, *RESIZE_METHODS)))
    shuffle_buffer: int | None = setting(
        None, "Shuffle buffer of the training input, in records (default: 1024).", at_least(1))
    cache: bool = setting(False, "Cache the decoded input in memory (small datasets).")
    crop_padding: int | None = setting(
        None, "Eval centre crop keeps size / (size + crop_padding) of the short side (default: "
        "the model's, 32; 0 = whole image, for small inputs).", at_least(0))
    min_crop_area: float = setting(
        0.08, "Smallest random training crop, as a fraction of the image area.",
        Check(0.0, 1.0, low_open=True))

    def __post_init__(self):
        object.__setattr__(self, "augment_name", _augment(self.augment_name))
        super().__post_init__()


@dataclasses.dataclass(frozen=True)
class OptimizerConfig(_Section):
    """The optimizer and what it optimises besides the data loss (weight decay, smoothing, EMA)."""

    optimizer: str = setting("rmsprop", "Optimizer.", one_of(OPTIMIZERS))
    momentum: float = setting(
        0.9, "Momentum (rmsprop and momentum optimizers).", Check(0.0, 1.0, high_open=True))
    rmsprop_decay: float = setting(0.9, "RMSProp decay (rho).", Check(0.0, 1.0, high_open=True))
    rmsprop_epsilon: float = setting(1e-3, "RMSProp epsilon.", Check(0.0, low_open=True))
    nesterov: bool = setting(False, "Nesterov momentum (momentum optimizer).")
    clip_global_norm: float = setting(
        0.0, "Clip gradients to this global norm; 0 = off.", at_least(0.0))
    weight_decay: float = setting(
        1e-5, "L2 weight decay on kernels (not BN parameters or biases).", at_least(0.0))
    label_smoothing: float = setting(0.1, "Label smoothing.", Check(0.0, 1.0, high_open=True))
    moving_average_decay: float = setting(
        0.9999, "EMA decay of the weights (eval/export use the EMA); 0 = off.",
        Check(0.0, 1.0, high_open=True))


@dataclasses.dataclass(frozen=True)
class ScheduleConfig(_Section):
    """The learning rate: base_learning_rate x global batch / lr_reference_batch, scheduled."""

    base_learning_rate: float = setting(
        0.016, "Learning rate per lr_reference_batch images; scaled by global batch / "
        "lr_reference_batch.", Check(0.0, low_open=True))
    lr_reference_batch: int = setting(
        256, "Batch at which base_learning_rate applies.", at_least(1))
    lr_schedule: str = setting("exponential", "Learning-rate schedule.", one_of(LR_SCHEDULES))
    lr_decay_factor: float = setting(
        0.97, "exponential: factor per decay period.", Check(0.0, 1.0, low_open=True))
    lr_decay_epochs: float = setting(
        2.4, "exponential: epochs per decay.", Check(0.0, low_open=True))
    warmup_epochs: float = setting(5.0, "Linear warmup length in epochs.", at_least(0.0))
    min_learning_rate: float = setting(0.0, "linear/cosine: final learning rate.", at_least(0.0))


@dataclasses.dataclass(frozen=True)
class TrainConfig(_Section):
    """How the run goes: mode, directories, batch sizes, steps, numerics, checkpoints, devices."""

    mode: str = setting(
        "train_and_eval", "train, eval (latest checkpoint) or train_and_eval.", one_of(MODES))
    model_dir: str | None = setting(
        None, "Where checkpoints, config.json, metrics.jsonl, TensorBoard events and "
        "eval_results.json go; an existing run there is resumed.")
    export_dir: str | None = setting(
        None, "After training, a SavedModel goes here (`bash test.sh export` writes the other "
        "formats).")
    train_batch_size: int = setting(2048, "Global training batch (all replicas).", at_least(1))
    eval_batch_size: int = setting(1024, "Global evaluation batch.", at_least(1))
    train_steps: int = setting(218949, "Total optimizer steps to train for.", at_least(1))
    iterations_per_loop: int = setting(
        1251, "Steps run in-graph per loop (one log line each).", at_least(1))
    steps_per_eval: int = setting(
        6255, "train_and_eval: evaluate every N steps.", at_least(0))
    precision: str = setting(
        "float32", "float32, mixed_float16 (dynamic loss scaling) or mixed_bfloat16; logits "
        "stay float32.", one_of(PRECISIONS))
    xla: str = setting(
        "auto", "XLA jit of the train step: auto = on for GPUs, off on CPU (slower there, "
        "docs/reference.md#known-traps).", one_of(XLA_CHOICES))
    seed: int = setting(0, "Random seed (weights init, input order).", at_least(0))
    deterministic: bool = setting(
        False, "Deterministic ops and input; resume replays the exact input.")
    keep_checkpoint_max: int = setting(5, "Checkpoints kept.", at_least(1))
    save_checkpoints_steps: int = setting(
        0, "Save every N steps (at loop ends); 0 = every loop.", at_least(0, "0: after every loop"))
    precise_bn_batches: int = setting(
        0, "Training: before each evaluation and the last checkpoint, recompute the BN moving "
        "statistics of the evaluated (EMA) weights as exact moments over N training batches "
        "(pycls' precise BN; for short runs). 0 = off.", at_least(0, "0: off"))
    eval_watch: bool = setting(False, "mode=eval: evaluate each new checkpoint until train_steps.")
    eval_timeout: float = setting(
        3600.0, "eval_watch: seconds to wait for a new checkpoint.", Check(0.0, low_open=True))
    num_cpu_devices: int = setting(
        0, "Split the CPU into N logical devices (MirroredStrategy; tests).", at_least(0))
    rank_table: str | None = setting(
        None, "Rank table JSON (rank_tables/8p.json); with RANK_ID selects "
        "MultiWorkerMirroredStrategy. TF_CONFIG works too.")


@dataclasses.dataclass(frozen=True)
class TransferConfig(_Section):
    """Initial weights when model_dir has no checkpoint of its own, and layers kept fixed."""

    restore_path: str | None = setting(
        None, "Initial weights (this project's checkpoint, TF1/automl checkpoint, Keras weights "
        "or a PyTorch .pth/.safetensors state dict) when model_dir has no checkpoint of its own.")
    restore_exclude: tuple[str, ...] = setting(
        (), "Comma list of variable prefixes/regexes not restored (e.g. head/dense).")
    restore_prefer_ema: bool = setting(
        True, "Restore /ExponentialMovingAverage copies when present.")
    freeze_pattern: str | None = setting(
        None, "Regex of variables kept fixed (BN there stays in inference mode).")

    def __post_init__(self):
        object.__setattr__(self, "restore_exclude", _tuple(self.restore_exclude))
        super().__post_init__()


SECTIONS: dict[str, type] = {
    "model": ModelConfig, "data": DatasetConfig, "optimizer": OptimizerConfig,
    "schedule": ScheduleConfig, "train": TrainConfig, "transfer": TransferConfig,
}
# flag / field name -> section name (field names are unique across the tree).
FIELD_SECTION: dict[str, str] = {
    field.name: section for section, cls in SECTIONS.items() for field in dataclasses.fields(cls)
}
FIELDS: dict[str, dataclasses.Field] = {
    field.name: field for cls in SECTIONS.values() for field in dataclasses.fields(cls)
}
_TREE_CHECKS: dict[str, Check] = {name: f.metadata["check"] for name, f in FIELDS.items()}
assert len(FIELD_SECTION) == sum(len(dataclasses.fields(c)) for c in SECTIONS.values()), (
    "a field name is used by two sections")


def field_type(name: str):
    """`int`, `float`, `str`, `bool` or `tuple` (a list flag) of tree field `name`."""
    cls = SECTIONS[FIELD_SECTION[name]]
    hint = typing.get_type_hints(cls)[name]
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        hint = next(a for a in typing.get_args(hint) if a is not type(None))  # X | None -> X
    return typing.get_origin(hint) or hint


@dataclasses.dataclass(frozen=True)
class Experiment:
    """One run's complete settings; `name` is the registry entry it started from."""

    name: str = "b0-imagenet-rmsprop"
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    data: DatasetConfig = dataclasses.field(default_factory=DatasetConfig)
    optimizer: OptimizerConfig = dataclasses.field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = dataclasses.field(default_factory=ScheduleConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    transfer: TransferConfig = dataclasses.field(default_factory=TransferConfig)

    # -- building ------------------------------------------------------------------------------
    @classmethod
    def from_flat(cls, values: dict, name: str | None = None,
                  ignore_unknown: bool = False) -> Experiment:
        """The defaults with `{flag name: value}` applied (`ignore_unknown`: skip other keys)."""
        base = cls() if name is None else cls(name=name)
        if ignore_unknown:
            values = {k: v for k, v in values.items() if k in FIELD_SECTION}
        return base.override(**values)

    def override(self, **values) -> Experiment:
        """A copy with fields (by flag name) replaced; raises ConfigError on an unknown name or
        a value out of bounds."""
        unknown = sorted(set(values) - set(FIELD_SECTION))
        if unknown:
            raise ConfigError(f"Unknown setting(s) {', '.join(unknown)}")
        grouped: dict[str, dict] = {}
        for key, value in values.items():
            grouped.setdefault(FIELD_SECTION[key], {})[key] = value
        sections = {section: dataclasses.replace(getattr(self, section), **changes)
                    for section, changes in grouped.items()}
        return dataclasses.replace(self, **sections)

    def flat(self) -> dict:
        """{flag name: value} of every field."""
        return {name: getattr(getattr(self, section), name)
                for name, section in FIELD_SECTION.items()}

    def to_dict(self) -> dict:
        """JSON-ready nested dict ({"name": ..., "model": {...}, ...})."""
        return {"name": self.name, **{s: dataclasses.asdict(getattr(self, s)) for s in SECTIONS}}

    @classmethod
    def from_dict(cls, values: dict) -> Experiment:
        """Inverse of `to_dict`; unknown keys (written by a newer version) are ignored."""
        flat = {}
        for section in SECTIONS:
            flat.update({k: v for k, v in (values.get(section) or {}).items()
                         if FIELD_SECTION.get(k) == section})
        return cls.from_flat(flat, name=values.get("name") or cls.name)

    # -- derived quantities --------------------------------------------------------------------
    @property
    def steps_per_epoch(self) -> float:
        return self.data.num_train_images / self.train.train_batch_size

    @property
    def train_epochs(self) -> int:
        return max(1, math.ceil(self.train.train_steps / max(self.steps_per_epoch, 1e-9)))

    @property
    def peak_learning_rate(self) -> float:
        return (self.schedule.base_learning_rate * self.train.train_batch_size
                / self.schedule.lr_reference_batch)

    @property
    def checkpoint_interval(self) -> int:
        return self.train.save_checkpoints_steps or self.train.iterations_per_loop

    # -- ready to run --------------------------------------------------------------------------
    def validate(self) -> Experiment:
        """What a runnable experiment needs beyond its fields' bounds; raises ConfigError naming
        the flag. Returns self."""
        if self.train.mode == "train_and_eval" and self.train.steps_per_eval < 1:
            raise ConfigError(
                f"--steps_per_eval must be at least 1, got {self.train.steps_per_eval}")
        if not self.train.model_dir:
            raise ConfigError("--model_dir is required: where checkpoints and logs go")
        if not self.data.use_synthetic_data and not self.data.data_dir:
            raise ConfigError(
                "--data_dir is required (a folder with train-* and validation-* TFRecords); "
                "or pass --use_synthetic_data")
        return self


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """What one `efficientnet.data.build_dataset` call needs: the data section's pipeline
    settings plus this dataset's resolution, classes, dtype and seed (the trainer fills these in
    from the experiment). Checked by the tree's field checks."""

    image_size: int | None = None  # None: spec.train_size when training, spec.eval_size for eval
    num_label_classes: int = 1000  # 1001 keeps TFRecord labels (1..1000); else label - 1
    augment_name: str | None = None
    randaug_num_layers: int = 2
    randaug_magnitude: int = 10
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    # 'bicubic' (TF2 tf.image.resize) | 'bicubic_tf1' (exact ResizeBicubic,
    # half_pixel_centers=False, for parity with TF1 checkpoints) | 'bilinear'
    resize_method: str = "bicubic"
    dtype: str = dataclasses.field(default="float32", metadata={"check": one_of(DTYPES)})
    shuffle_buffer: int = 1024
    seed: int | None = None
    deterministic: bool = False
    use_synthetic_data: bool = False
    cache: bool = False
    # None: spec.crop_padding. Eval crops image_size / (image_size + crop_padding) of the short
    # side; small inputs such as 28 px Fashion-MNIST at 32 px want 0 (the whole image).
    crop_padding: int | None = None
    # Smallest random-crop area as a fraction of the image (the Inception crop's 0.08); small,
    # centred images such as Fashion-MNIST train better with a milder crop.
    min_crop_area: float = 0.08

    def __post_init__(self):
        object.__setattr__(self, "augment_name", _augment(self.augment_name))
        _check_fields(self)

    @property
    def label_offset(self) -> int:
        """What is subtracted from the 1-based TFRecord label (0 for 1001-class models)."""
        return 0 if self.num_label_classes == 1001 else 1
