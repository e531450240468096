"""Named training recipes (REFERENCE.md section 4), each with a tiny `-smoke` variant for tests.

A recipe is a dict of `RunConfig` field values; `get_recipe(name)` applies it to the defaults and
command-line flags override the result. The learning rate is `base_learning_rate x global batch /
lr_reference_batch`; each seed recipe's reference batch is its published global batch, so the
published learning rate comes out at the published batch and scales linearly from there.
"""

from __future__ import annotations

import difflib

from efficientnet.train.config import ConfigError, RunConfig

RECIPES: dict[str, dict] = {
    # tensorflow/tpu main.py for EfficientNet-B0 (also seed 002): RMSProp 0.016 x batch/256,
    # warmup 5 epochs, x0.97 every 2.4 epochs, L2 1e-5, label smoothing 0.1, EMA 0.9999.
    "tpu-rmsprop": {},
    # Seed 000 (B1): RMSProp, linear decay from 0.15 at global batch 2048, warmup 2 epochs.
    "seed000-b1": {
        "model_name": "efficientnet-b1", "base_learning_rate": 0.15, "lr_reference_batch": 2048,
        "lr_schedule": "linear", "warmup_epochs": 2.0, "min_learning_rate": 5e-5,
        "train_batch_size": 2048, "train_steps": 350 * 625, "iterations_per_loop": 625,
        "steps_per_eval": 625 * 10,
    },
    # Seed 001: EfficientNetV2-S fine-tune from ImageNet-21k, RMSProp 5e-4 constant (global
    # batch 512 = 32 x 16), 15 epochs, clip global norm 5, dynamic loss scale, drop path 0.2, 384 px.
    "seed001-v2-finetune": {
        "model_name": "efficientnetv2-s", "base_learning_rate": 5e-4, "lr_reference_batch": 512,
        "lr_schedule": "constant", "warmup_epochs": 0.0, "clip_global_norm": 5.0,
        "precision": "mixed_float16", "drop_connect_rate": 0.2, "image_size": 384,
        "train_batch_size": 512, "eval_batch_size": 512, "train_steps": 15 * 2502,
        "iterations_per_loop": 500, "steps_per_eval": 2502, "restore_exclude": ("head/dense",),
    },
    # Seed 003 (B3, pycls): SGD momentum 0.9 nesterov, cosine, 0.1 x batch/256, wd 1e-5.
    "seed003-pycls": {
        "model_name": "efficientnet-b3", "optimizer": "momentum", "nesterov": True,
        "base_learning_rate": 0.1, "lr_reference_batch": 256, "lr_schedule": "cosine",
        "warmup_epochs": 0.0, "moving_average_decay": 0.0, "label_smoothing": 0.0,
        "train_batch_size": 256, "eval_batch_size": 256, "train_steps": 100 * 5005,
        "iterations_per_loop": 1001, "steps_per_eval": 5005,
    },
    # Seed 004 (SE-ResNeXt50): Momentum 0.9, 0.05 cosine with 1 warmup epoch (batch 128 x 8),
    # wd 1e-4, 150 epochs, no label smoothing.
    "seed004-se-resnext": {
        "model_name": "se-resnext50", "optimizer": "momentum", "base_learning_rate": 0.05,
        "lr_reference_batch": 1024, "lr_schedule": "cosine", "warmup_epochs": 1.0,
        "weight_decay": 1e-4, "label_smoothing": 0.0, "moving_average_decay": 0.0,
        "train_batch_size": 1024, "eval_batch_size": 1024, "train_steps": 150 * 1251,
        "iterations_per_loop": 1251, "steps_per_eval": 1251 * 5,
    },
}

# Tiny settings that make any recipe run in seconds on a CPU (synthetic data, 32 px, 10 classes).
SMOKE_OVERRIDES = {
    "image_size": 32, "train_batch_size": 4, "eval_batch_size": 4, "train_steps": 4,
    "iterations_per_loop": 2, "steps_per_eval": 4, "num_train_images": 64, "num_eval_images": 8,
    "num_label_classes": 10, "use_synthetic_data": True, "restore_exclude": (),
}


# Smoke variants swap in the family's smallest member where the recipe's model is slow to trace.
SMOKE_MODELS = {"seed001-v2-finetune": "efficientnetv2-b0", "seed003-pycls": "efficientnet-b0"}


def recipe_names() -> list[str]:
    return [n for name in RECIPES for n in (name, f"{name}-smoke")]


def recipe_values(name: str) -> dict:
    """Field values of recipe `name` (`<recipe>-smoke` adds SMOKE_OVERRIDES)."""
    smoke = name.endswith("-smoke")
    base = name[: -len("-smoke")] if smoke else name
    if base not in RECIPES:
        close = difflib.get_close_matches(name, recipe_names(), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(f"Unknown --recipe {name!r}.{hint} Known: {', '.join(recipe_names())}")
    values = dict(RECIPES[base], recipe=name)
    if smoke:
        values.update(SMOKE_OVERRIDES)
        if base in SMOKE_MODELS:
            values["model_name"] = SMOKE_MODELS[base]
    return values


def get_recipe(name: str, **overrides) -> RunConfig:
    """RunConfig of recipe `name` with `overrides` applied (not yet validated)."""
    return RunConfig(**{**recipe_values(name), **overrides})
