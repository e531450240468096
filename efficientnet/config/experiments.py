"""Named experiments: one small entry per recipe, each with a tiny `-smoke` variant for tests.

An entry is the fields it changes from the schema's defaults (which are the tensorflow/tpu B0
recipe) and one line saying where its numbers come from; docs/reference.md#recipes has the
published figures. The learning rate is `base_learning_rate x global batch / lr_reference_batch`;
each entry's reference batch is its published global batch, so the published learning rate comes
out at the published batch and scales linearly from there. `--recipe=<name>` picks one; flags
override its fields.
"""

from __future__ import annotations

import dataclasses
import difflib
import sys

from efficientnet.config.schema import ConfigError, Experiment

DEFAULT = "b0-imagenet-rmsprop"


@dataclasses.dataclass(frozen=True)
class Recipe:
    name: str
    source: str  # where the numbers come from: paper / upstream file
    values: dict  # fields changed from the schema defaults, by flag name
    smoke_model: str | None = None  # a smaller model of the family for the -smoke variant


RECIPES: dict[str, Recipe] = {r.name: r for r in (
    Recipe("b0-imagenet-rmsprop",
           "tensorflow/tpu models/official/efficientnet/main.py (RMSProp 0.016 x batch/256, "
           "warmup 5, x0.97 / 2.4 epochs, 350 epochs)",
           {}),
    Recipe("b1-imagenet-rmsprop-linear",
           "Ascend EfficientNet-B1 entry (RMSProp, linear decay from 0.15 at batch 2048, "
           "warmup 2 epochs); B1 from the EfficientNet paper, arXiv:1905.11946",
           {"model_name": "efficientnet-b1", "base_learning_rate": 0.15,
            "lr_reference_batch": 2048, "lr_schedule": "linear", "warmup_epochs": 2.0,
            "min_learning_rate": 5e-5, "train_batch_size": 2048, "train_steps": 350 * 625,
            "iterations_per_loop": 625, "steps_per_eval": 625 * 10}),
    Recipe("v2s-in21k-finetune",
           "Ascend EfficientNetV2-S fine-tune of google/automl's ImageNet-21k checkpoint "
           "(automl efficientnetv2 README): RMSProp 5e-4 constant, 15 epochs, clip 5, 384 px",
           {"model_name": "efficientnetv2-s", "base_learning_rate": 5e-4,
            "lr_reference_batch": 512, "lr_schedule": "constant", "warmup_epochs": 0.0,
            "clip_global_norm": 5.0, "precision": "mixed_float16", "drop_connect_rate": 0.2,
            "image_size": 384, "train_batch_size": 512, "eval_batch_size": 512,
            "train_steps": 15 * 2502, "iterations_per_loop": 500, "steps_per_eval": 2502,
            "restore_exclude": ("head/dense",)},
           smoke_model="efficientnetv2-b0"),
    Recipe("b3-imagenet-sgd-cosine",
           "facebookresearch/pycls configs/dds_baselines/effnet/EN-B3_dds_8gpu.yaml (SGD "
           "nesterov 0.9, cosine, 0.1 x batch/256, wd 1e-5)",
           {"model_name": "efficientnet-b3", "optimizer": "momentum", "nesterov": True,
            "base_learning_rate": 0.1, "lr_reference_batch": 256, "lr_schedule": "cosine",
            "warmup_epochs": 0.0, "moving_average_decay": 0.0, "label_smoothing": 0.0,
            "train_batch_size": 256, "eval_batch_size": 256, "train_steps": 100 * 5005,
            "iterations_per_loop": 1001, "steps_per_eval": 5005},
           smoke_model="efficientnet-b0"),
    Recipe("seresnext50-imagenet-momentum",
           "Ascend SE-ResNeXt50 entry (momentum 0.9, 0.05 cosine at batch 1024, 1 warmup epoch, "
           "wd 1e-4, 150 epochs); the model from the SE-Net paper, arXiv:1709.01507",
           {"model_name": "se-resnext50", "optimizer": "momentum", "base_learning_rate": 0.05,
            "lr_reference_batch": 1024, "lr_schedule": "cosine", "warmup_epochs": 1.0,
            "weight_decay": 1e-4, "label_smoothing": 0.0, "moving_average_decay": 0.0,
            "train_batch_size": 1024, "eval_batch_size": 1024, "train_steps": 150 * 1251,
            "iterations_per_loop": 1251, "steps_per_eval": 1251 * 5}),
    Recipe("fashion-mnist-demo",
           "this repository's `make demo` (efficientnet/demo.py): Lite0 at 48 px, 300 CPU steps; "
           "half the TPU learning rate, cosine, precise BN (docs/reference.md#recipes)",
           # A run of minutes: no dropout or drop-connect (they slow a run this short down), BN
           # statistics recomputed for the EMA weights before eval and export (momentum-0.99
           # statistics trail the weights of a short run), and 28 px images seen whole in training
           # and eval (crop padding 0, no random crop: flips only).
           {"model_name": "efficientnet-lite0", "image_size": 48, "num_label_classes": 10,
            "train_batch_size": 64, "eval_batch_size": 250, "train_steps": 300,
            "iterations_per_loop": 50, "steps_per_eval": 300, "num_train_images": 60000,
            "num_eval_images": 10000, "base_learning_rate": 0.008, "lr_schedule": "cosine",
            "warmup_epochs": 0.05, "moving_average_decay": 0.999, "dropout_rate": 0.0,
            "drop_connect_rate": 0.0, "precise_bn_batches": 20, "keep_checkpoint_max": 2,
            "crop_padding": 0, "min_crop_area": 1.0}),
)}

# Tiny settings that make any recipe run in seconds on a CPU (synthetic data, 32 px, 10 classes).
SMOKE_VALUES = {
    "image_size": 32, "train_batch_size": 4, "eval_batch_size": 4, "train_steps": 4,
    "iterations_per_loop": 2, "steps_per_eval": 4, "num_train_images": 64, "num_eval_images": 8,
    "num_label_classes": 10, "use_synthetic_data": True, "restore_exclude": (),
    "precise_bn_batches": 0,
}

# Names of the previous release, accepted (with a one-line notice) for one more release so that
# users' scripts keep working. These keys are the only place the old numbered names remain.
ALIASES = {
    "tpu-rmsprop": "b0-imagenet-rmsprop",
    "seed000-b1": "b1-imagenet-rmsprop-linear",
    "seed001-v2-finetune": "v2s-in21k-finetune",
    "seed003-pycls": "b3-imagenet-sgd-cosine",
    "seed004-se-resnext": "seresnext50-imagenet-momentum",
}


def experiment_names() -> list[str]:
    """Every registered name, each followed by its `-smoke` variant."""
    return [n for name in RECIPES for n in (name, f"{name}-smoke")]


def canonical_name(name: str, warn: bool = True) -> str:
    """`name` with an old alias replaced by its new name (a one-line notice on stderr)."""
    smoke = name.endswith("-smoke")
    base = name[: -len("-smoke")] if smoke else name
    if base not in ALIASES:
        return name
    new = ALIASES[base] + ("-smoke" if smoke else "")
    if warn:
        print(f"warning: recipe {name!r} is deprecated and will be removed; use {new!r}",
              file=sys.stderr)
    return new


def experiment_values(name: str) -> dict:
    """Field values of experiment `name` (`<name>-smoke` adds SMOKE_VALUES)."""
    name = canonical_name(name)
    smoke = name.endswith("-smoke")
    base = name[: -len("-smoke")] if smoke else name
    if base not in RECIPES:
        close = difflib.get_close_matches(name, experiment_names(), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(
            f"Unknown --recipe {name!r}.{hint} Known: {', '.join(experiment_names())}")
    recipe = RECIPES[base]
    values = dict(recipe.values)
    if smoke:
        values.update(SMOKE_VALUES)
        if recipe.smoke_model:
            values["model_name"] = recipe.smoke_model
    return values


def get_experiment(name: str = DEFAULT, **overrides) -> Experiment:
    """Experiment `name` (an old alias works, with a notice) with `overrides` (flag names)
    applied; field bounds are checked, `Experiment.validate()` is left to the caller."""
    name = canonical_name(name)
    return Experiment(name=name).override(**{**experiment_values(name), **overrides})
