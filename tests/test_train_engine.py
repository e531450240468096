"""In-process training runs: learning, NaN guard, train_and_eval, checkpoints, precision, recipes."""

import json
import math
import os

import pytest
import tensorflow as tf

from efficientnet.config import RECIPES, Experiment, get_experiment
from efficientnet.train import checkpointing, testing, trainer


def tiny_config(tmp_path, **overrides) -> Experiment:
    values = dict(
        model_dir=str(tmp_path / "model"), use_synthetic_data=True, image_size=16,
        num_label_classes=4, train_batch_size=8, eval_batch_size=8, num_train_images=64,
        num_eval_images=64, train_steps=6, iterations_per_loop=2, steps_per_eval=6,
        optimizer="sgd", base_learning_rate=0.1, lr_schedule="constant", warmup_epochs=0,
        weight_decay=0.0, label_smoothing=0.0, moving_average_decay=0.0, mode="train")
    values.update(overrides)
    return Experiment().override(**values)


def run_tiny(config, poison_batch=None):
    return trainer.run(
        config, model_fn=testing.tiny_model_fn,
        train_dataset_fn=testing.learnable_dataset_fn(
            True, config.train.train_batch_size, config.model.image_size,
            config.model.num_label_classes, poison_batch=poison_batch),
        eval_dataset_fn=testing.learnable_dataset_fn(
            False, config.train.eval_batch_size, config.model.image_size,
            config.model.num_label_classes))


def test_loss_goes_down_and_eval_is_accurate_on_a_learnable_set(tmp_path):
    config = tiny_config(tmp_path, train_steps=120, iterations_per_loop=20, steps_per_eval=120,
                         optimizer="momentum", base_learning_rate=1.0, mode="train_and_eval",
                         moving_average_decay=0.9)
    result = run_tiny(config)
    losses = [r["loss"] for r in result.history]
    assert len(losses) == 6 and all(math.isfinite(loss) for loss in losses), losses
    assert losses[-1] < 0.5 * losses[0], losses
    assert result.eval_results["top_1_accuracy"] > 0.8, result.eval_results


def test_train_and_eval_writes_results_metrics_and_checkpoints(tmp_path):
    config = tiny_config(tmp_path, mode="train_and_eval", steps_per_eval=4, train_steps=8,
                         keep_checkpoint_max=2, moving_average_decay=0.99)
    result = run_tiny(config)
    model_dir = config.train.model_dir
    results = json.load(open(os.path.join(model_dir, "eval_results.json")))
    assert set(results) >= {"top_1_accuracy", "top_5_accuracy", "loss", "global_step",
                            "num_images"}
    assert results["global_step"] == 8 and results["num_images"] == 64
    assert results == pytest.approx(result.eval_results)
    assert 0.0 <= results["top_1_accuracy"] <= results["top_5_accuracy"] <= 1.0
    assert math.isfinite(results["loss"])
    records = [json.loads(line) for line in open(os.path.join(model_dir, "metrics.jsonl"))]
    train = [r for r in records if r["kind"] == "train"]
    assert [r["step"] for r in train] == [2, 4, 6, 8]
    assert all(r["images_per_sec"] > 0 and "eta_s" in r for r in train)
    # Constant schedule: base_learning_rate 0.1 scaled by batch 8 / 256.
    assert all(math.isfinite(r["loss"]) and r["lr"] == pytest.approx(0.1 * 8 / 256)
               for r in train), train
    assert [r["global_step"] for r in records if r["kind"] == "eval"] == [4, 8]
    assert checkpointing.latest_checkpoint(model_dir).endswith("ckpt-8")
    assert len(tf.train.get_checkpoint_state(model_dir).all_model_checkpoint_paths) == 2
    assert os.listdir(os.path.join(model_dir, "train"))  # TensorBoard events
    assert json.load(open(os.path.join(model_dir, "config.json")))["train"]["train_steps"] == 8


def test_load_weights_for_inference_uses_ema_and_reports_step(tmp_path):
    config = tiny_config(tmp_path, moving_average_decay=0.5)
    run_tiny(config)
    model = testing.tiny_model_fn(config, 16)
    assert checkpointing.load_weights_for_inference(model, config.train.model_dir) == 6
    ema, used = checkpointing.read_weights(config.train.model_dir, use_ema=True)
    raw, _ = checkpointing.read_weights(config.train.model_dir, use_ema=False)
    assert used and set(ema) == {w.path for w in model.weights}
    kernel = model.get_layer("head_dense").kernel
    assert (kernel.numpy() == ema["head_dense/kernel"]).all()
    assert not (ema["head_dense/kernel"] == raw["head_dense/kernel"]).all()
    checkpointing.load_weights_for_inference(model, config.train.model_dir, use_ema=False)
    assert (kernel.numpy() == raw["head_dense/kernel"]).all()


def test_load_weights_from_empty_dir_names_it(tmp_path):
    model = testing.tiny_model_fn(tiny_config(tmp_path), 16)
    with pytest.raises(FileNotFoundError, match="empty_dir"):
        checkpointing.load_weights_for_inference(model, str(tmp_path / "empty_dir"))
    assert checkpointing.latest_checkpoint(str(tmp_path / "empty_dir")) is None


def test_nan_guard_stops_naming_the_step_and_keeps_last_good_checkpoint(tmp_path):
    config = tiny_config(tmp_path, train_steps=10)
    with pytest.raises(trainer.NonFiniteLossError, match="step 5") as info:
        run_tiny(config, poison_batch=4)  # the 5th step sees NaN images
    assert "ckpt-4" in str(info.value)
    assert checkpointing.latest_checkpoint(config.train.model_dir).endswith("ckpt-4")


def test_nan_guard_catches_a_nan_that_never_reaches_the_loss(tmp_path):
    import keras

    def masking_model_fn(config, image_size):
        # The NaN images give a finite loss (masked after the conv, as oneDNN's fused ReLU does)
        # but NaN kernel gradients: the step must still count as non-finite.
        inputs = keras.Input((image_size, image_size, 3))
        x = keras.layers.Conv2D(8, 3, name="stem_conv")(inputs)
        x = keras.layers.Lambda(lambda t: tf.where(tf.math.is_nan(t), 0.0, t))(x)
        x = keras.layers.GlobalAveragePooling2D()(x)
        return keras.Model(inputs, keras.layers.Dense(config.model.num_label_classes)(x))

    config = tiny_config(tmp_path, train_steps=10)
    with pytest.raises(trainer.NonFiniteLossError, match="Loss or gradients .* step 5"):
        trainer.run(config, model_fn=masking_model_fn,
                    train_dataset_fn=testing.learnable_dataset_fn(
                        True, config.train.train_batch_size, config.model.image_size,
                        config.model.num_label_classes, poison_batch=4))
    assert checkpointing.latest_checkpoint(config.train.model_dir).endswith("ckpt-4")


def test_restart_with_finished_model_dir_trains_nothing(tmp_path):
    config = tiny_config(tmp_path)
    assert run_tiny(config).global_step == 6
    again = run_tiny(config)
    assert again.global_step == 6 and again.history == []


def test_resume_continues_to_more_steps(tmp_path):
    config = tiny_config(tmp_path, train_steps=4)
    run_tiny(config)
    result = run_tiny(config.override(train_steps=8))
    assert [r["step"] for r in result.history] == [6, 8]
    assert result.global_step == 8
    assert checkpointing.latest_checkpoint(config.train.model_dir).endswith("ckpt-8")


def test_mixed_float16_trains_with_float32_logits(tmp_path):
    import keras

    built = []

    def recording_model_fn(config, image_size):
        built.append(testing.tiny_model_fn(config, image_size))
        return built[-1]

    config = tiny_config(tmp_path, precision="mixed_float16", train_steps=4)
    try:
        result = trainer.run(
            config, model_fn=recording_model_fn,
            train_dataset_fn=testing.learnable_dataset_fn(True, 8, 16, 4),
            eval_dataset_fn=testing.learnable_dataset_fn(False, 8, 16, 4))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    model = built[0]
    # The body computes in float16 (float32 weights), the logits come out float32.
    conv = model.get_layer("stem_conv")
    assert (conv.compute_dtype, conv.kernel.dtype) == ("float16", "float32")
    logits = model(tf.zeros([2, 16, 16, 3]), training=False)
    assert logits.dtype == tf.float32
    assert result.global_step == 4
    assert all(math.isfinite(r["loss"]) for r in result.history), result.history


@pytest.mark.slow
@pytest.mark.parametrize("recipe", [f"{name}-smoke" for name in RECIPES])
def test_recipe_smoke_variant_trains_and_evaluates(tmp_path, recipe):
    import keras

    config = get_experiment(recipe, model_dir=str(tmp_path / "m"), mode="train_and_eval",
                            train_steps=2, steps_per_eval=2, num_eval_images=4,
                            eval_batch_size=4)
    try:
        result = trainer.run(config)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert result.global_step == 2
    assert result.eval_results["num_images"] == 4
    assert all(math.isfinite(r["loss"]) for r in result.history), result.history


def test_custom_model_fn_takes_preprocessing_from_the_named_spec(tmp_path, monkeypatch):
    """A peer model (keras.applications) trains through the engine on efficientnet.data input,
    which is built with the spec of --model_name (its mean/std and crop padding)."""
    import keras as keras_module

    import efficientnet.data
    from efficientnet.config import ConfigError
    from efficientnet.models import get_spec
    from efficientnet.train import trainer as trainer_module

    def peer(config, size):
        return keras_module.applications.EfficientNetB0(
            weights=None, input_shape=(size, size, 3), classes=config.model.num_label_classes,
            classifier_activation=None)

    calls = []
    real_build_dataset = efficientnet.data.build_dataset

    def spying_build_dataset(pattern, is_training, batch, spec, config, **kwargs):
        calls.append((is_training, spec, config.image_size))
        return real_build_dataset(pattern, is_training, batch, spec, config, **kwargs)

    monkeypatch.setattr(efficientnet.data, "build_dataset", spying_build_dataset)
    config = get_experiment(
        mode="train", use_synthetic_data=True, model_dir=str(tmp_path), train_batch_size=4,
        image_size=32, iterations_per_loop=1, train_steps=2, num_label_classes=10,
        model_name="efficientnetv2-b0")
    result = trainer_module.run(config, model_fn=peer)
    assert result.global_step == 2 and len(result.history) == 2
    assert calls == [(True, get_spec("efficientnetv2-b0"), 32)]
    # A name outside the zoo has no spec: the resolution must then be given.
    with pytest.raises(ConfigError, match="--image_size is required with a custom model"):
        trainer_module.run(config.override(model_name="my-net", image_size=None,
                                           model_dir=str(tmp_path / "other")), model_fn=peer)
