"""Transfer learning: TF1 / native / Keras restores, exclusion, mismatch errors, conversion."""

import json
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from efficientnet import models
from efficientnet.train import checkpointing
from efficientnet.train.restore import (
    RestoreError,
    apply_freeze,
    frozen_variables,
    restore_pretrained,
)


def write_tf1_checkpoint(path, model, *, model_subscope=False, head_classes=None, scope=None,
                         seed=0):
    """A TF1-style checkpoint of `model` under its TF1 names (docs/reference.md#checkpoint-
    variable-names), with distinct EMA copies.

    Returns {keras path: (raw value, ema value)}.
    """
    rng = np.random.default_rng(seed)
    truth = {}
    graph = tf.Graph()
    with graph.as_default():
        variables = []
        for keras_path, tf1_name in models.tf1_variable_names(model, scope=scope):
            variable = next(v for v in model.weights if v.path == keras_path)
            shape = list(variable.shape)
            if head_classes and keras_path.startswith("head_dense"):
                shape[-1] = head_classes
            raw = rng.normal(scale=0.1, size=shape).astype("float32")
            if keras_path.endswith("moving_variance"):
                raw = np.abs(raw) + 0.5
            ema = raw * 0.5  # distinct from the raw value, still a sane network
            if model_subscope:
                head, rest = tf1_name.split("/", 1)
                tf1_name = f"{head}/model/{rest}"
            variables.append(tf.compat.v1.Variable(raw, name=tf1_name))
            variables.append(tf.compat.v1.Variable(ema, name=tf1_name + "/ExponentialMovingAverage"))
            truth[keras_path] = (raw, ema)
        variables.append(tf.compat.v1.Variable(7, name="global_step", dtype=tf.int64))
        saver = tf.compat.v1.train.Saver(variables)
        with tf.compat.v1.Session(graph=graph) as session:
            session.run(tf.compat.v1.global_variables_initializer())
            saver.save(session, str(path))
    return truth


def weight(model, path):
    return next(v for v in model.weights if v.path == path).numpy()


@pytest.mark.parametrize("name", ["efficientnet-b0", "efficientnetv2-b0"])
def test_tf1_checkpoint_restores_every_variable_with_ema_values(tmp_path, name):
    model = models.build(name, image_size=32)
    truth = write_tf1_checkpoint(tmp_path / "model.ckpt", model)
    fresh = models.build(name, image_size=32)
    report = restore_pretrained(fresh, name, str(tmp_path / "model.ckpt"),
                                model_dir=str(tmp_path / "run"))
    assert report["format"] == "tf1" and report["used_ema"] is True
    assert report["missing_in_checkpoint"] == [] and report["excluded"] == []
    assert report["unused_in_checkpoint"] == []
    assert len(report["restored"]) == len(fresh.weights)
    spot = ["stem_conv/kernel", "blocks_0_project_conv/kernel", "head_dense/kernel",
            "head_bn/moving_variance"]
    spot += ["blocks_0_dwconv/kernel", "blocks_0_se_reduce/bias"] if name == "efficientnet-b0" \
        else ["blocks_1_fused_conv/kernel", "blocks_5_se_expand/kernel"]
    for path in spot:
        np.testing.assert_array_equal(weight(fresh, path), truth[path][1])  # the EMA copy
    on_disk = json.loads((tmp_path / "run" / "restore_report.json").read_text())
    assert on_disk == report


def test_tf1_checkpoint_with_model_subscope_and_raw_weights(tmp_path):
    model = models.build("efficientnet-b0", image_size=32)
    truth = write_tf1_checkpoint(tmp_path / "model.ckpt", model, model_subscope=True)
    report = restore_pretrained(model, "efficientnet-b0", str(tmp_path / "model.ckpt"),
                                prefer_ema=False, verbose=False)
    assert report["used_ema"] is False and report["missing_in_checkpoint"] == []
    np.testing.assert_array_equal(weight(model, "blocks_3_expand_conv/kernel"),
                                  truth["blocks_3_expand_conv/kernel"][0])


@pytest.mark.parametrize("pattern", ["efficientnet-b0/model/head/dense/", "head/dense",
                                     "head_dense"])
def test_exclude_patterns_match_tf1_and_keras_names(tmp_path, pattern):
    source = models.build("efficientnet-b0", image_size=32)
    truth = write_tf1_checkpoint(tmp_path / "model.ckpt", source, model_subscope=True)
    target = models.build("efficientnet-b0", image_size=32, num_classes=10)
    before = weight(target, "head_dense/kernel")
    report = restore_pretrained(target, "efficientnet-b0", str(tmp_path / "model.ckpt"),
                                exclude=[pattern], verbose=False)
    assert report["excluded"] == ["head_dense/kernel", "head_dense/bias"]
    np.testing.assert_array_equal(weight(target, "head_dense/kernel"), before)
    np.testing.assert_array_equal(weight(target, "stem_conv/kernel"),
                                  truth["stem_conv/kernel"][1])


def test_head_mismatch_without_exclude_names_the_fix(tmp_path):
    source = models.build("efficientnet-b0", image_size=32)
    write_tf1_checkpoint(tmp_path / "model.ckpt", source)
    target = models.build("efficientnet-b0", image_size=32, num_classes=10)
    with pytest.raises(RestoreError) as error:
        restore_pretrained(target, "efficientnet-b0", str(tmp_path / "model.ckpt"), verbose=False)
    assert str(error.value) == ("head/dense has 1000 classes in the checkpoint and 10 in the "
                                "model: add --restore_exclude=head/dense")


def test_checkpoint_of_another_model_fails_clearly(tmp_path):
    source = models.build("efficientnet-b1", image_size=32)
    write_tf1_checkpoint(tmp_path / "model.ckpt", source)
    target = models.build("efficientnet-b0", image_size=32)
    with pytest.raises(RestoreError, match="holds efficientnet-b1, not efficientnet-b0: pass "
                                           "--model_name=efficientnet-b1"):
        restore_pretrained(target, "efficientnet-b0", str(tmp_path / "model.ckpt"))


def test_1001_class_checkpoint_drops_background_row(tmp_path):
    source = models.build("efficientnet-b0", image_size=32)
    truth = write_tf1_checkpoint(tmp_path / "model.ckpt", source, head_classes=1001,
                                 scope="efficientnet-b0")
    target = models.build("efficientnet-b0", image_size=32)
    restore_pretrained(target, "efficientnet-b0", str(tmp_path / "model.ckpt"), verbose=False)
    np.testing.assert_array_equal(weight(target, "head_dense/kernel"),
                                  truth["head_dense/kernel"][1][:, 1:])
    np.testing.assert_array_equal(weight(target, "head_dense/bias"),
                                  truth["head_dense/bias"][1][1:])


def test_native_checkpoint_restore_and_keras_weights_file(tmp_path):
    source = models.build("efficientnet-lite0", image_size=32, num_classes=5)
    step = tf.Variable(3, dtype=tf.int64)
    ema = {p: tf.Variable(v.numpy() + 1.0) for p, v in checkpointing.weight_dict(source).items()}
    checkpointing.make_manager(checkpointing.make_checkpoint(source, step, ema_variables=ema),
                               str(tmp_path / "native"), 1, step=step).save()
    target = models.build("efficientnet-lite0", image_size=32, num_classes=7)
    report = restore_pretrained(target, "efficientnet-lite0", str(tmp_path / "native"),
                                exclude=["head/dense"], verbose=False)
    assert report["format"] == "native" and report["used_ema"]
    np.testing.assert_allclose(weight(target, "stem_conv/kernel"),
                               weight(source, "stem_conv/kernel") + 1.0)

    source.save_weights(str(tmp_path / "lite.weights.h5"))
    keras_target = models.build("efficientnet-lite0", image_size=32, num_classes=5)
    report = restore_pretrained(keras_target, "efficientnet-lite0",
                                str(tmp_path / "lite.weights.h5"), verbose=False)
    assert report["format"] == "keras" and report["missing_in_checkpoint"] == []
    np.testing.assert_array_equal(weight(keras_target, "blocks_4_dwconv/kernel"),
                                  weight(source, "blocks_4_dwconv/kernel"))


def test_unreadable_restore_path_is_reported(tmp_path):
    model = models.build("efficientnet-lite0", image_size=32)
    with pytest.raises(RestoreError, match="is not a readable checkpoint"):
        restore_pretrained(model, "efficientnet-lite0", str(tmp_path / "nothing-here"))


def test_freeze_pattern_freezes_matching_layers_and_bn_runs_in_inference():
    model = models.build("efficientnet-b0", image_size=32, num_classes=4)
    frozen = frozen_variables(model, r"^(stem|blocks_[0-9])_")
    assert frozen and all(v.path.startswith(("stem_", "blocks_")) for v in frozen)
    names = apply_freeze(model, r"^(stem|blocks_[0-9])_")
    assert "stem_bn" in names and "blocks_9_project_bn" in names and "head_dense" not in names
    assert not model.get_layer("stem_bn").trainable and model.get_layer("head_dense").trainable
    images = np.random.default_rng(0).normal(size=(4, 32, 32, 3)).astype("float32")
    before = weight(model, "stem_bn/moving_mean")
    model(images, training=True)
    np.testing.assert_array_equal(weight(model, "stem_bn/moving_mean"), before)
    with pytest.raises(RestoreError, match="matches no variable"):
        apply_freeze(model, "no_such_layer")
    keras.backend.clear_session()


@pytest.mark.slow
def test_convert_cli_writes_native_checkpoint_and_report(tmp_path):
    source = models.build("efficientnet-b0")
    truth = write_tf1_checkpoint(tmp_path / "model.ckpt", source, head_classes=1001)
    out = tmp_path / "converted"
    proc = subprocess.run(
        [sys.executable, "-m", "efficientnet.convert", "--model_name=efficientnet-b0",
         f"--checkpoint={tmp_path / 'model.ckpt'}", f"--output_dir={out}"],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((out / "restore_report.json").read_text())
    assert report["num_classes"] == 1000 and report["forward_pass_finite"] is True
    assert report["missing_in_checkpoint"] == [] and report["used_ema"] is True
    restored = models.build("efficientnet-b0")
    assert checkpointing.load_weights_for_inference(restored, str(out)) == 0
    np.testing.assert_array_equal(weight(restored, "head_dense/kernel"),
                                  truth["head_dense/kernel"][1][:, 1:])
    again = subprocess.run(
        [sys.executable, "-m", "efficientnet.convert", "--model_name=efficientnet-b0",
         f"--checkpoint={tmp_path / 'model.ckpt'}", f"--output_dir={out}"],
        capture_output=True, text=True, timeout=300)
    assert again.returncode == 2 and "already holds a checkpoint" in again.stderr


@pytest.mark.slow
def test_engine_fine_tunes_from_restore_path_and_resume_wins(tmp_path):
    """--restore_path/--restore_exclude through the training engine, then resume beats restore."""
    from efficientnet.config import get_experiment
    from efficientnet.train import trainer

    base = get_experiment("b0-imagenet-rmsprop-smoke",
        model_name="efficientnet-lite0", mode="train", num_label_classes=5)
    pretrain_dir, finetune_dir = tmp_path / "pretrain", tmp_path / "finetune"
    trainer.run(base.override(model_dir=str(pretrain_dir)))
    keras.backend.clear_session()
    finetune = base.override(model_dir=str(finetune_dir), num_label_classes=3,
                             restore_path=str(pretrain_dir), restore_exclude=("head/dense",))
    result = trainer.run(finetune)
    assert result.global_step == finetune.train.train_steps
    report = json.loads((finetune_dir / "restore_report.json").read_text())
    assert report["format"] == "native" and report["used_ema"] is True
    assert report["excluded"] == ["head_dense/kernel", "head_dense/bias"]
    assert report["missing_in_checkpoint"] == []
    assert len(report["restored"]) == len(models.build(
        "efficientnet-lite0", image_size=32, num_classes=3).weights) - 2
    # A second start resumes from its own checkpoint and does not restore again.
    (finetune_dir / "restore_report.json").unlink()
    keras.backend.clear_session()
    again = trainer.run(finetune.override(train_steps=finetune.train.train_steps + 2))
    assert again.global_step == finetune.train.train_steps + 2
    assert not (finetune_dir / "restore_report.json").exists()

    keras.backend.clear_session()
    with pytest.raises(RestoreError, match="head/dense has 5 classes in the checkpoint and 3"):
        trainer.run(finetune.override(model_dir=str(tmp_path / "no_exclude"), restore_exclude=()))
