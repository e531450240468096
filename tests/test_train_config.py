"""Fast tests of RunConfig, recipes, flags and schedules (no training)."""

import math

import pytest

from efficientnet.train import recipes
from efficientnet.train.config import ConfigError, RunConfig
from efficientnet.train.flags import config_from_flags, help_text

BASE = ["--model_dir=/tmp/unused", "--use_synthetic_data"]


def test_defaults_are_tensorflow_tpu_b0():
    config = config_from_flags(BASE)
    assert config.recipe == "tpu-rmsprop" and config.model_name == "efficientnet-b0"
    assert (config.train_batch_size, config.train_steps, config.iterations_per_loop,
            config.steps_per_eval) == (2048, 218949, 1251, 6255)
    assert config.peak_learning_rate == pytest.approx(0.016 * 2048 / 256)
    assert (config.weight_decay, config.label_smoothing, config.moving_average_decay) == (
        1e-5, 0.1, 0.9999)


def test_flags_override_recipe_only_when_given():
    config = config_from_flags(BASE + ["--recipe=seed000-b1", "--train_batch_size=1024"])
    assert config.model_name == "efficientnet-b1" and config.lr_schedule == "linear"
    assert config.train_batch_size == 1024
    assert config.peak_learning_rate == pytest.approx(0.15 * 1024 / 2048)


@pytest.mark.parametrize("name", recipes.recipe_names())
def test_every_recipe_and_smoke_variant_resolves(name):
    config = recipes.get_recipe(name, model_dir="/tmp/x", data_dir="/tmp/d").validate()
    from efficientnet.models import get_spec

    get_spec(config.model_name)
    if name.endswith("-smoke"):
        assert config.use_synthetic_data and config.train_steps <= 8 and config.image_size == 32


def test_seed001_recipe_is_the_published_finetune():
    config = recipes.get_recipe("seed001-v2-finetune")
    assert (config.optimizer, config.lr_schedule, config.base_learning_rate) == (
        "rmsprop", "constant", 5e-4)
    assert config.clip_global_norm == 5 and config.precision == "mixed_float16"
    assert config.drop_connect_rate == 0.2 and config.image_size == 384


@pytest.mark.parametrize("argv, fragment", [
    (["--model_dir=/tmp/x"], "--data_dir is required"),
    (["--use_synthetic_data"], "--model_dir is required"),
    (BASE + ["--recipe=nope"], "Unknown --recipe"),
    (BASE + ["--mode=fit"], "mode"),
    (BASE + ["--train_batch_size=0"], "--train_batch_size must be at least 1"),
    (BASE + ["--no_such_flag=1"], "no_such_flag"),
    (BASE + ["--train_steps=abc"], "train_steps"),
    (BASE + ["--label_smoothing=1.5"], "label_smoothing"),
])
def test_bad_flags_raise_one_clear_config_error(argv, fragment):
    with pytest.raises(ConfigError, match=None) as info:
        config_from_flags(argv)
    assert fragment in str(info.value)


def test_help_lists_the_tpu_flag_names():
    text = help_text()
    for name in ("--data_dir", "--iterations_per_loop", "--moving_average_decay",
                 "--num_cpu_devices", "--rank_table", "--precision", "--xla", "--recipe"):
        assert name in text


def test_learning_rate_schedules():
    import tensorflow as tf  # noqa: F401

    from efficientnet.train.optimization import learning_rate_fn

    config = RunConfig(train_batch_size=256, num_train_images=2560, train_steps=1000)
    lr = learning_rate_fn(config)  # 10 steps/epoch, warmup 50 steps, decay every 24 steps
    assert float(lr(0)) == 0.0
    assert float(lr(25)) == pytest.approx(0.008)
    assert float(lr(50)) == pytest.approx(0.016 * 0.97 ** 2)
    assert float(lr(100)) == pytest.approx(0.016 * 0.97 ** 4)
    cosine = learning_rate_fn(config.replace(lr_schedule="cosine", warmup_epochs=0))
    assert float(cosine(0)) == pytest.approx(0.016)
    assert float(cosine(500)) == pytest.approx(0.008)
    assert float(cosine(1000)) == pytest.approx(0.0, abs=1e-9)
    linear = learning_rate_fn(config.replace(lr_schedule="linear", warmup_epochs=0))
    assert float(linear(500)) == pytest.approx(0.008)
    constant = learning_rate_fn(config.replace(lr_schedule="constant", warmup_epochs=0))
    assert float(constant(999)) == pytest.approx(0.016)
    assert math.isfinite(float(lr(10**7)))


def test_weight_decay_skips_bn_and_biases():
    import keras

    from efficientnet.train.optimization import decayed_variables

    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3),
                              keras.layers.BatchNormalization(), keras.layers.Flatten(),
                              keras.layers.Dense(2)])
    names = sorted(v.path for v in decayed_variables(model.trainable_variables))
    assert len(names) == 2 and all(n.endswith("kernel") for n in names)


# Non-default values for every setting RunConfig hands to the input pipeline.
_DATA_SETTINGS = {
    "augment_name": "randaugment", "cache": True, "crop_padding": 0, "cutmix_alpha": 0.3,
    "deterministic": True, "min_crop_area": 0.5, "mixup_alpha": 0.2, "num_label_classes": 7,
    "randaug_magnitude": 5, "randaug_num_layers": 3, "resize_method": "bilinear", "seed": 11,
    "shuffle_buffer": 17, "use_synthetic_data": True,
}


def test_every_data_setting_reaches_the_input_pipeline():
    """A RunConfig field the pipeline also has must not be dropped on the way (--crop_padding and
    --min_crop_area once were: accepted, saved in config.json and silently ignored)."""
    import dataclasses

    from efficientnet.data.config import DataConfig
    from efficientnet.train.inputs import data_config

    shared = ({f.name for f in dataclasses.fields(DataConfig)}
              & {f.name for f in dataclasses.fields(RunConfig)}) - {"image_size"}
    assert shared == set(_DATA_SETTINGS), "new shared setting: add it to _DATA_SETTINGS"
    defaults = DataConfig()
    for name, value in _DATA_SETTINGS.items():
        assert getattr(defaults, name) != value, name
    config = RunConfig(model_dir="/tmp/unused", data_dir="/tmp/d", **_DATA_SETTINGS)
    data = data_config(config, 40)
    assert data.image_size == 40
    assert {name: getattr(data, name) for name in _DATA_SETTINGS} == _DATA_SETTINGS


def test_crop_flags_reach_the_input_pipeline():
    from efficientnet.train.inputs import data_config

    config = config_from_flags(BASE + ["--crop_padding=0", "--min_crop_area=1.0"])
    data = data_config(config, 48)
    assert (data.crop_padding, data.min_crop_area) == (0, 1.0)
    unset = data_config(config_from_flags(BASE), 48)
    assert (unset.crop_padding, unset.min_crop_area) == (None, 0.08)  # None: the spec's 32


def test_export_after_training_keeps_the_eval_preprocessing():
    from efficientnet.export.__main__ import parse_flags
    from efficientnet.train.trainer import export_args

    config = config_from_flags(BASE + ["--export_dir=/tmp/unused_export", "--image_size=48",
                                       "--crop_padding=0", "--resize_method=bilinear",
                                       "--num_label_classes=10"])
    export = parse_flags(export_args(config))
    assert (export.image_size, export.crop_padding, export.resize_method,
            export.num_label_classes, export.formats) == (48, 0, "bilinear", 10, ("saved_model",))
    export = parse_flags(export_args(config_from_flags(BASE + ["--export_dir=/tmp/e"])))
    assert (export.crop_padding, export.resize_method) == (None, None)
