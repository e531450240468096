"""Command-line flags of `python -m efficientnet.main` -> `RunConfig`.

Flag names are the tensorflow/tpu and seed 002 ones. Every flag defaults to "not given": the
recipe (`--recipe`, default tpu-rmsprop) supplies the value and only flags actually passed
override it, so `--help` shows the recipe defaults of tpu-rmsprop.
"""

from __future__ import annotations

import dataclasses
import json
import os

from absl import flags

from efficientnet.train.config import (
    LR_SCHEDULES,
    MODES,
    OPTIMIZERS,
    PRECISIONS,
    XLA_CHOICES,
    ConfigError,
    RunConfig,
)
from efficientnet.train.recipes import get_recipe, recipe_names

_D = RunConfig()
CONFIG_FILE = "config.json"

# name: (kind, help). kind: str | int | float | bool | list | ("enum", choices)
FLAG_TABLE: dict[str, tuple] = {
    "recipe": ("str", "Named recipe supplying every default: " + ", ".join(recipe_names())),
    "model_name": ("str", f"Model of the zoo (efficientnet-b0..l2, -lite*, -edgetpu-*, "
                          f"-condconv-*, efficientnetv2-*, se-resnext50). [{_D.model_name}]"),
    "mode": (("enum", MODES), f"train, eval (latest checkpoint) or train_and_eval. [{_D.mode}]"),
    "data_dir": ("str", "Folder with train-* and validation-* TFRecord shards."),
    "model_dir": ("str", "Where checkpoints, metrics.jsonl, TensorBoard events and "
                         "eval_results.json go; an existing run there is resumed."),
    "export_dir": ("str", "Where `bash test.sh export` / efficientnet.export writes models."),
    "use_synthetic_data": ("bool", "Random images instead of --data_dir (smoke tests, speed)."),
    "train_batch_size": ("int", f"Global training batch (all replicas). [{_D.train_batch_size}]"),
    "eval_batch_size": ("int", f"Global evaluation batch. [{_D.eval_batch_size}]"),
    "train_steps": ("int", f"Total optimizer steps to train for. [{_D.train_steps}]"),
    "iterations_per_loop": ("int", "Steps run in-graph per loop (one log line each). "
                                   f"[{_D.iterations_per_loop}]"),
    "steps_per_eval": ("int", f"train_and_eval: evaluate every N steps. [{_D.steps_per_eval}]"),
    "num_train_images": ("int", f"Images per training epoch. [{_D.num_train_images}]"),
    "num_eval_images": ("int", "Validation images (synthetic eval size; "
                               f"real eval reads every record). [{_D.num_eval_images}]"),
    "num_label_classes": ("int", "Classes of the head; 1001 keeps the background label 0. "
                                 f"[{_D.num_label_classes}]"),
    "image_size": ("int", "Train and eval resolution (default: the model's)."),
    "optimizer": (("enum", OPTIMIZERS), f"Optimizer. [{_D.optimizer}]"),
    "base_learning_rate": ("float", "Learning rate per lr_reference_batch images; scaled by "
                                    f"global batch / lr_reference_batch. [{_D.base_learning_rate}]"),
    "lr_reference_batch": ("int", f"Batch at which base_learning_rate applies. "
                                  f"[{_D.lr_reference_batch}]"),
    "lr_schedule": (("enum", LR_SCHEDULES), f"Learning-rate schedule. [{_D.lr_schedule}]"),
    "lr_decay_factor": ("float", f"exponential: factor per decay period. [{_D.lr_decay_factor}]"),
    "lr_decay_epochs": ("float", f"exponential: epochs per decay. [{_D.lr_decay_epochs}]"),
    "warmup_epochs": ("float", f"Linear warmup length in epochs. [{_D.warmup_epochs}]"),
    "min_learning_rate": ("float", "linear/cosine: final learning rate. [0]"),
    "momentum": ("float", f"Momentum (rmsprop and momentum optimizers). [{_D.momentum}]"),
    "rmsprop_decay": ("float", f"RMSProp decay (rho). [{_D.rmsprop_decay}]"),
    "rmsprop_epsilon": ("float", f"RMSProp epsilon. [{_D.rmsprop_epsilon}]"),
    "nesterov": ("bool", "Nesterov momentum (momentum optimizer)."),
    "clip_global_norm": ("float", "Clip gradients to this global norm; 0 = off. [0]"),
    "weight_decay": ("float", "L2 weight decay on kernels (not BN parameters or biases). "
                              f"[{_D.weight_decay}]"),
    "label_smoothing": ("float", f"Label smoothing. [{_D.label_smoothing}]"),
    "moving_average_decay": ("float", "EMA decay of the weights (eval/export use the EMA); "
                                      f"0 = off. [{_D.moving_average_decay}]"),
    "dropout_rate": ("float", "Dropout before the head (default: the model's)."),
    "drop_connect_rate": ("float", "Drop-connect / stochastic depth rate (default: model's)."),
    "augment_name": ("str", "Augmentation: autoaugment or randaugment (default none); runs on "
                            "whole batches, XLA-compiled once at start (~10-20 s on 2 cores)."),
    "randaug_num_layers": ("int", f"RandAugment N. [{_D.randaug_num_layers}]"),
    "randaug_magnitude": ("int", f"RandAugment M. [{_D.randaug_magnitude}]"),
    "mixup_alpha": ("float", "Mixup alpha; 0 = off. [0]"),
    "cutmix_alpha": ("float", "CutMix alpha; 0 = off. [0]"),
    "resize_method": ("str", "Image resize method (default: the data module's)."),
    "shuffle_buffer": ("int", "Shuffle buffer of the training input (default: data module's)."),
    "cache": ("bool", "Cache the decoded input in memory (small datasets)."),
    "crop_padding": ("int", "Eval centre crop keeps size / (size + crop_padding) of the short "
                            "side (default: the model's, 32; 0 = whole image, small inputs)."),
    "min_crop_area": ("float", "Smallest random training crop, as a fraction of the image area. "
                               f"[{_D.min_crop_area}]"),
    "precision": (("enum", PRECISIONS), "float32, mixed_float16 (dynamic loss scaling) or "
                                        "mixed_bfloat16; logits stay float32. [float32]"),
    "xla": (("enum", XLA_CHOICES), "XLA jit of the train step: auto = on for GPUs, off on CPU "
                                   "(measured 8x slower there). [auto]"),
    "seed": ("int", f"Random seed (weights init, input order). [{_D.seed}]"),
    "deterministic": ("bool", "Deterministic ops and input; resume replays the exact input."),
    "keep_checkpoint_max": ("int", f"Checkpoints kept. [{_D.keep_checkpoint_max}]"),
    "save_checkpoints_steps": ("int", "Save every N steps (at loop ends); 0 = every loop. [0]"),
    "precise_bn_batches": ("int", "Training: before each evaluation and the last checkpoint, "
                                  "recompute the BN moving statistics of the evaluated (EMA) "
                                  "weights as exact moments over N training batches (pycls' "
                                  "precise BN; for short runs). 0 = off. "
                                  f"[{_D.precise_bn_batches}]"),
    "eval_watch": ("bool", "mode=eval: evaluate each new checkpoint until train_steps."),
    "eval_timeout": ("float", f"eval_watch: seconds to wait for a new checkpoint. "
                              f"[{_D.eval_timeout:g}]"),
    "num_cpu_devices": ("int", "Split the CPU into N logical devices (MirroredStrategy; tests)."),
    "rank_table": ("str", "Seed 002 rank table (rank_tables/8p.json); with RANK_ID selects "
                          "MultiWorkerMirroredStrategy. TF_CONFIG works too."),
    "restore_path": ("str", "Initial weights (this project's checkpoint, TF1/automl checkpoint, "
                            "Keras weights or a PyTorch .pth/.safetensors state dict) when "
                            "model_dir has no checkpoint of its own."),
    "restore_exclude": ("list", "Comma list of variable prefixes/regexes not restored "
                                "(e.g. head/dense)."),
    "restore_prefer_ema": ("bool", "Restore /ExponentialMovingAverage copies when present. [true]"),
    "freeze_pattern": ("str", "Regex of variables kept fixed (BN there stays in inference mode)."),
}

_FIELDS = {f.name for f in dataclasses.fields(RunConfig)}
assert set(FLAG_TABLE) <= _FIELDS, set(FLAG_TABLE) - _FIELDS


def define_flags(flag_values: flags.FlagValues) -> None:
    for name, (kind, help_text) in FLAG_TABLE.items():
        if isinstance(kind, tuple):
            flags.DEFINE_enum(name, None, list(kind[1]), help_text, flag_values=flag_values)
        elif kind == "str":
            flags.DEFINE_string(name, None, help_text, flag_values=flag_values)
        elif kind == "int":
            flags.DEFINE_integer(name, None, help_text, flag_values=flag_values)
        elif kind == "float":
            flags.DEFINE_float(name, None, help_text, flag_values=flag_values)
        elif kind == "bool":
            flags.DEFINE_boolean(name, None, help_text, flag_values=flag_values)
        elif kind == "list":
            flags.DEFINE_list(name, None, help_text, flag_values=flag_values)


def new_flag_values() -> flags.FlagValues:
    flag_values = flags.FlagValues()
    define_flags(flag_values)
    return flag_values


def help_text() -> str:
    return ("usage: python -m efficientnet.main [--flag=value ...]\n\n"
            "Trains / evaluates EfficientNets (tensorflow/tpu flag names).\n\n"
            + new_flag_values().get_help())


def config_from_flags(argv: list[str]) -> RunConfig:
    """Parses `argv` (without the program name) into a validated RunConfig."""
    flag_values = new_flag_values()
    try:
        rest = flag_values(["efficientnet.main", *argv], known_only=False)
    except flags.Error as error:
        raise ConfigError(str(error)) from None
    if len(rest) > 1:
        raise ConfigError(f"Unexpected arguments: {' '.join(rest[1:])} (flags look like --name=value)")
    given = {name: flag_values[name].value for name in FLAG_TABLE
             if flag_values[name].present and name != "recipe"}
    if "restore_exclude" in given:
        given["restore_exclude"] = tuple(given["restore_exclude"] or ())
    recipe = flag_values["recipe"].value or RunConfig.recipe
    config = get_recipe(recipe, **given)
    if config.mode == "eval":
        config = config.replace(**inherited_for_eval(config.model_dir, given))
    return config.validate()


# What evaluating a trained model_dir takes from the run that trained it (unless flags say).
EVAL_INHERITED = ("model_name", "num_label_classes", "image_size", "eval_batch_size",
                  "num_eval_images", "dropout_rate", "drop_connect_rate")


def inherited_for_eval(model_dir: str | None, given: dict) -> dict:
    """Fields of <model_dir>/config.json (written by training) that eval should reuse."""
    if not model_dir or not os.path.isfile(os.path.join(model_dir, CONFIG_FILE)):
        return {}
    path = os.path.join(model_dir, CONFIG_FILE)
    try:
        with open(path, encoding="utf-8") as handle:
            saved = json.load(handle)
    except ValueError as error:
        raise ConfigError(f"{path} is not valid JSON ({error}): restore it, or pass "
                          "--model_name, --num_label_classes and --image_size") from None
    if not isinstance(saved, dict):
        raise ConfigError(f"{path} does not hold the settings of a run (a JSON object)")
    values = {k: saved[k] for k in EVAL_INHERITED if k in saved and k not in given}
    if "data_dir" not in given and "use_synthetic_data" not in given:
        values["use_synthetic_data"] = bool(saved.get("use_synthetic_data", False))
        if saved.get("data_dir"):
            values["data_dir"] = saved["data_dir"]
    return values


def save_config(config: RunConfig) -> None:
    """Writes <model_dir>/config.json (eval and export read the model settings back)."""
    os.makedirs(config.model_dir, exist_ok=True)
    path = os.path.join(config.model_dir, CONFIG_FILE)
    with open(path + ".tmp", "w", encoding="utf-8") as handle:
        json.dump(dataclasses.asdict(config), handle, indent=2)
    os.replace(path + ".tmp", path)
