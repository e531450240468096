"""Tiny models and learnable data for tests and demos of the engine (no zoo model, no files).

`python -m efficientnet.train.testing --model_dir D [--flags of efficientnet.main]` trains the
tiny model on the learnable set and prints one JSON line {"losses": [...], "step": N}; tests run
it in subprocesses (logical CPU devices and TF_CONFIG must be set before TensorFlow starts).
"""

from __future__ import annotations

import json
import sys

import keras
import numpy as np
import tensorflow as tf


def tiny_model_fn(config, image_size: int) -> keras.Model:
    """Conv -> ReLU -> global pool -> dense: no BN or dropout, so replicas compute exactly what
    one device does on the same global batch. Logits are float32 under any policy."""
    inputs = keras.Input((image_size, image_size, 3), name="images")
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", name="stem_conv")(inputs)
    x = keras.layers.ReLU(name="stem_relu")(x)
    x = keras.layers.GlobalAveragePooling2D(name="head_pool")(x)
    x = keras.layers.Dense(config.model.num_label_classes, name="head_dense")(x)
    logits = keras.layers.Activation("linear", dtype="float32", name="logits")(x)
    return keras.Model(inputs, logits, name="tiny")


def learnable_arrays(num_examples: int, image_size: int, num_classes: int, seed: int = 0):
    """Images whose mean colour encodes the class (plus noise): a set a tiny model can learn."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_classes, size=num_examples).astype(np.int32)
    colours = np.random.default_rng(1234).normal(size=(num_classes, 3)).astype(np.float32)
    images = 0.5 * rng.normal(size=(num_examples, image_size, image_size, 3)).astype(np.float32)
    images += colours[labels][:, None, None, :]
    return images, labels


def learnable_dataset_fn(is_training: bool, global_batch_size: int, image_size: int,
                         num_classes: int, num_examples: int = 64, seed: int = 0,
                         poison_batch: int | None = None):
    """fn(input_context) -> per-replica batches of the learnable set, in a fixed order.

    Input pipeline i of n takes examples i, i+n, ... so n workers together see exactly the global
    batches of one worker. Training: repeats, one-hot labels; eval: one pass, int labels.
    `poison_batch`: that per-replica training batch (0-based) is all NaN (NaN-guard tests).
    """
    images, labels = learnable_arrays(num_examples, image_size, num_classes, seed)

    def dataset_fn(input_context=None):
        batch = (input_context.get_per_replica_batch_size(global_batch_size)
                 if input_context is not None else global_batch_size)
        dataset = tf.data.Dataset.from_tensor_slices((images, labels))
        if input_context is not None and input_context.num_input_pipelines > 1:
            dataset = dataset.shard(input_context.num_input_pipelines,
                                    input_context.input_pipeline_id)
        if not is_training:
            return dataset.batch(batch)
        dataset = dataset.repeat().batch(batch, drop_remainder=True)
        dataset = dataset.map(lambda x, y: (x, tf.one_hot(y, num_classes)))
        if poison_batch is not None:
            dataset = dataset.enumerate().map(
                lambda i, xy: (tf.where(i == poison_batch, np.float32("nan"), xy[0]), xy[1]))
        return dataset

    return dataset_fn


def main(argv: list[str] | None = None) -> int:
    """The tiny run inside the CLI error boundary of efficientnet.main."""
    from efficientnet import cli
    from efficientnet.config import ConfigError
    from efficientnet.train.checkpointing import CheckpointError

    return cli.run(_main, argv, known={ConfigError: 2, CheckpointError: 2})


def _main(args: list[str]) -> int:
    from efficientnet.train import trainer
    from efficientnet.train.flags import config_from_flags

    defaults = ["--use_synthetic_data", "--image_size=16", "--num_label_classes=4",
                "--moving_average_decay=0", "--weight_decay=0", "--label_smoothing=0",
                "--optimizer=sgd", "--base_learning_rate=0.1", "--lr_schedule=constant",
                "--warmup_epochs=0", "--mode=train", "--train_batch_size=8",
                "--num_train_images=64", "--iterations_per_loop=2", "--train_steps=6"]
    config = config_from_flags(defaults + args)
    model, train = config.model, config.train
    train_fn = learnable_dataset_fn(True, train.train_batch_size, model.image_size,
                                    model.num_label_classes)
    eval_fn = learnable_dataset_fn(False, train.eval_batch_size, model.image_size,
                                   model.num_label_classes)
    try:
        result = trainer.run(config, model_fn=tiny_model_fn, train_dataset_fn=train_fn,
                             eval_dataset_fn=eval_fn)
    except trainer.Preempted as error:
        print(error, flush=True)
        return 143
    print(json.dumps({"losses": [r["loss"] for r in result.history],
                      "step": result.global_step, "eval": result.eval_results}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
