"""--precise_bn_batches: BN moving statistics recomputed exactly for the evaluated weights."""

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from efficientnet.config import ConfigError
from efficientnet.train import checkpointing, testing, trainer
from efficientnet.train.fused_batch_norm import FusedBatchNormalization
from tests.test_train_engine import tiny_config

BATCHES = 3


def bn_model_fn(config, image_size):
    """conv -> BN -> ReLU -> dropout -> conv -> BN -> pool -> dense; the dropout sits before the
    second BN, so statistics gathered with dropout on would differ."""
    inputs = keras.Input((image_size, image_size, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv1")(inputs)
    x = FusedBatchNormalization(momentum=0.99, epsilon=1e-3, name="bn1")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Dropout(0.5, name="drop")(x)
    x = keras.layers.Conv2D(5, 3, padding="same", name="conv2")(x)
    x = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-3, name="bn2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(config.model.num_label_classes, dtype="float32", name="head")(x)
    return keras.Model(inputs, outputs)


def config_for(tmp_path, **overrides):
    """The engine tests' tiny run: 4 steps of 8 images, EMA 0.5."""
    return tiny_config(tmp_path, **{"train_steps": 4, "steps_per_eval": 4,
                                    "base_learning_rate": 0.5, "moving_average_decay": 0.5,
                                    **overrides})


def train_fn(config):
    return testing.learnable_dataset_fn(True, config.train.train_batch_size,
                                        config.model.image_size, config.model.num_label_classes)


def expected_statistics(weights: dict, config, replicas: int = 1) -> dict:
    """Mean and (biased) variance of each BN input over the first BATCHES training batches, in
    float64 with numpy: each replica's share of a batch normalised by its own moments (BN is
    not synchronised across replicas), dropout off."""
    conv1 = keras.layers.Conv2D(4, 3, padding="same")
    conv2 = keras.layers.Conv2D(5, 3, padding="same")
    conv1.build((None, 16, 16, 3))
    conv2.build((None, 16, 16, 4))
    conv1.set_weights([weights["conv1/kernel"], weights["conv1/bias"]])
    conv2.set_weights([weights["conv2/kernel"], weights["conv2/bias"]])
    first, second = [], []
    per_replica = config.train.train_batch_size // replicas
    for images, _ in train_fn(config)(None).take(BATCHES):
        for share in np.split(images.numpy(), replicas):
            a = conv1(share).numpy().astype(np.float64)
            mean, var = a.mean(axis=(0, 1, 2)), a.var(axis=(0, 1, 2))
            b = weights["bn1/gamma"] * (a - mean) / np.sqrt(var + 1e-3) + weights["bn1/beta"]
            first.append(a)
            second.append(conv2(np.maximum(b, 0).astype(np.float32)).numpy().astype(np.float64))
    assert len(first) * per_replica == BATCHES * config.train.train_batch_size
    first, second = np.concatenate(first), np.concatenate(second)
    return {"bn1": (first.mean(axis=(0, 1, 2)), first.var(axis=(0, 1, 2))),
            "bn2": (second.mean(axis=(0, 1, 2)), second.var(axis=(0, 1, 2)))}


def _moving(values: dict, name: str):
    return values[f"{name}/moving_mean"], values[f"{name}/moving_variance"]


def test_recompute_sets_exact_statistics_of_the_ema_weights_and_leaves_the_rest(tmp_path):
    config = config_for(tmp_path)
    run = trainer.Trainer(config, tf.distribute.get_strategy(), None, model_fn=bn_model_fn)
    run.restore_or_initialize()
    run.train(train_fn(config))  # --precise_bn_batches 0: trains 4 steps, nothing recomputed
    raw_before = {p: v.numpy() for p, v in checkpointing.weight_dict(run.model).items()}
    ema_before = {p: v.numpy() for p, v in run.ema.averages.items()}
    assert not np.allclose(ema_before["conv1/kernel"], raw_before["conv1/kernel"])

    assert run.recompute_batch_norm(train_fn(config), batches=BATCHES) == BATCHES

    ema_after = {p: v.numpy() for p, v in run.ema.averages.items()}
    expected = expected_statistics(ema_before, config)
    for name in ("bn1", "bn2"):
        mean, variance = _moving(ema_after, name)
        np.testing.assert_allclose(mean, expected[name][0], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(variance, expected[name][1], rtol=1e-4, atol=1e-5)
        # the recomputed values differ from what momentum had left there
        assert not np.allclose(variance, _moving(ema_before, name)[1], rtol=1e-2)
    # Everything else is as it was: raw weights and their statistics, the other EMA weights,
    # the layers' momentum and dropout rate.
    for path, value in checkpointing.weight_dict(run.model).items():
        np.testing.assert_array_equal(value.numpy(), raw_before[path])
    for path, value in ema_after.items():
        if "moving_" not in path:
            np.testing.assert_array_equal(value, ema_before[path])
    assert run.model.get_layer("bn1").momentum == 0.99
    assert run.model.get_layer("bn2").momentum == 0.9
    assert run.model.get_layer("drop").rate == 0.5


def test_training_saves_the_recomputed_statistics_in_the_last_checkpoint(tmp_path, capsys):
    config = config_for(tmp_path, precise_bn_batches=BATCHES, moving_average_decay=0.0)
    trainer.run(config, model_fn=bn_model_fn, train_dataset_fn=train_fn(config))
    assert (f"precise BN: moving statistics of 2 BN layers recomputed over {BATCHES} training "
            f"batches ({BATCHES * 8} images)") in capsys.readouterr().out
    saved, _ = checkpointing.read_weights(config.train.model_dir, use_ema=True)
    expected = expected_statistics(saved, config)
    for name in ("bn1", "bn2"):
        np.testing.assert_allclose(_moving(saved, name)[0], expected[name][0], rtol=1e-4,
                                   atol=1e-5)
        np.testing.assert_allclose(_moving(saved, name)[1], expected[name][1], rtol=1e-4,
                                   atol=1e-5)


def test_eval_of_the_saved_checkpoint_reproduces_the_training_eval(tmp_path):
    """`test.sh eval` (mode=eval) and export read the checkpoint: the statistics the training
    run evaluated with must be the saved ones, so the two evaluations agree exactly."""
    from efficientnet.train.flags import config_from_flags

    config = config_for(tmp_path, precise_bn_batches=BATCHES, mode="train_and_eval")
    assert config_from_flags(["--use_synthetic_data", f"--model_dir={tmp_path / 'x'}",
                              "--precise_bn_batches=7"]).train.precise_bn_batches == 7
    eval_fn = testing.learnable_dataset_fn(False, 8, 16, 4)
    trained = trainer.run(config, model_fn=bn_model_fn, train_dataset_fn=train_fn(config),
                          eval_dataset_fn=eval_fn).eval_results
    again = trainer.run(config.override(mode="eval"), model_fn=bn_model_fn,
                        eval_dataset_fn=eval_fn).eval_results
    assert trained["global_step"] == again["global_step"] == 4
    for key in ("top_1_accuracy", "top_5_accuracy", "loss"):
        assert again[key] == pytest.approx(trained[key], rel=1e-6), key


def test_negative_precise_bn_batches_is_refused_naming_the_flag(tmp_path):
    with pytest.raises(ConfigError, match="--precise_bn_batches must be >= 0"):
        config_for(tmp_path, precise_bn_batches=-1).validate()


_MIRRORED = """
import json, pathlib, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import numpy as np
from test_precise_bn import bn_model_fn, config_for, expected_statistics, train_fn, _moving
from efficientnet.train import checkpointing, trainer
config = config_for(pathlib.Path(sys.argv[1]), precise_bn_batches=3, moving_average_decay=0.0,
                    num_cpu_devices=2)
trainer.run(config, model_fn=bn_model_fn, train_dataset_fn=train_fn(config))
saved, _ = checkpointing.read_weights(config.train.model_dir, use_ema=True)
expected = expected_statistics(saved, config, replicas=2)
print(json.dumps({name: [float(np.max(np.abs(got - want) / (np.abs(want) + 1e-3)))
                         for got, want in zip(_moving(saved, name), expected[name])]
                  for name in ("bn1", "bn2")}))
"""


def test_two_replicas_give_the_exact_moments_over_both_shares(tmp_path):
    """MirroredStrategy over 2 logical CPUs: every replica's share of each batch counts (not
    only the first replica's copy of the statistics, which is what gets saved)."""
    tests = Path(__file__).resolve().parent
    done = subprocess.run(
        [sys.executable, "-c", _MIRRORED, str(tmp_path)], capture_output=True, text=True,
        timeout=300, cwd=tests.parent,
        env={**os.environ, "PYTHONPATH": f"{tests}{os.pathsep}{tests.parent}"})
    assert done.returncode == 0, done.stderr[-3000:]
    errors = json.loads(done.stdout.strip().splitlines()[-1])
    assert max(max(pair) for pair in errors.values()) < 1e-4, errors
