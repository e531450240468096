"""Datasets for the training engine: `efficientnet.data.build_dataset`, distributed per replica.

A dataset function here has the signature `fn(input_context) -> tf.data.Dataset` and yields
per-replica batches; `strategy.distribute_datasets_from_function` calls it once per input pipeline
(worker), so file sharding follows `input_context`. Tests may pass their own functions of the same
shape to the engine.
"""

from __future__ import annotations

import dataclasses
import math
import os

import tensorflow as tf

from efficientnet.config.schema import ConfigError, DataConfig, Experiment


def data_config(config: Experiment, image_size: int) -> DataConfig:
    """The input pipeline's `DataConfig` for this run: every field the two share, by name (so a
    new data setting cannot be left behind), this run's image size and seed, and the compute
    dtype of its precision policy."""
    values = config.flat()
    shared = {f.name for f in dataclasses.fields(DataConfig)} & set(values)
    chosen = {name: values[name] for name in shared}
    chosen["image_size"] = image_size
    chosen["dtype"] = "bfloat16" if config.train.precision == "mixed_bfloat16" else "float32"
    # None means "the pipeline's default": leave those fields out.
    return DataConfig(**{k: v for k, v in chosen.items() if v is not None})


def file_pattern(config: Experiment, is_training: bool) -> str | None:
    if config.data.use_synthetic_data:
        return None
    return os.path.join(config.data.data_dir, "train-*" if is_training else "validation-*")


def check_data_dir(config: Experiment, need_train: bool, need_eval: bool) -> None:
    """Raises ConfigError when the TFRecords the run needs are not in --data_dir."""
    if config.data.use_synthetic_data:
        return
    if not tf.io.gfile.isdir(config.data.data_dir):
        raise ConfigError(f"--data_dir {config.data.data_dir!r} does not exist or is not a directory")
    for needed, split in ((need_train, True), (need_eval, False)):
        pattern = file_pattern(config, split)
        if needed and not tf.io.gfile.glob(pattern):
            raise ConfigError(
                f"No TFRecords match {pattern!r}: --data_dir must hold train-* and validation-* "
                "shards (convert images with `python -m tfrecord_tools`)")


def make_dataset_fn(config: Experiment, spec, is_training: bool, global_batch_size: int,
                    image_size: int, skip_batches: int = 0):
    """fn(input_context) -> per-replica dataset from efficientnet.data.build_dataset.

    `skip_batches` per replica are dropped from the start (deterministic resume: the same
    pipeline, positioned where the interrupted run stopped).
    """
    from efficientnet.data import build_dataset

    pattern = file_pattern(config, is_training)
    dconfig = data_config(config, image_size)

    def dataset_fn(input_context: tf.distribute.InputContext | None = None):
        if input_context is not None:
            batch = input_context.get_per_replica_batch_size(global_batch_size)
        else:
            batch = global_batch_size
        dataset = build_dataset(pattern, is_training, batch, spec, dconfig,
                                input_context=input_context)
        if skip_batches:
            dataset = dataset.skip(skip_batches)
        return dataset

    return dataset_fn


def local_replicas(strategy) -> int:
    """Replicas of this worker (each has its own input pipeline position)."""
    from efficientnet.train import distribute

    _, _, workers = distribute.task_info(strategy)
    return max(1, strategy.num_replicas_in_sync // workers)


def eval_dataset_fn(config: Experiment, spec, image_size: int, strategy):
    """The validation input; synthetic data stops after --num_eval_images."""
    fn = make_dataset_fn(config, spec, False, config.train.eval_batch_size, image_size)
    if not config.data.use_synthetic_data:
        return fn
    steps = math.ceil(config.data.num_eval_images / config.train.eval_batch_size)
    return lambda ctx: fn(ctx).take(steps * local_replicas(strategy))


def train_dataset_fn(config: Experiment, spec, image_size: int, start_step: int, strategy):
    """The training input, positioned for a run resuming at `start_step`.

    With --deterministic the pipeline is replayed and the consumed batches skipped (the exact
    input position); otherwise it is reseeded with seed + start_step (cheap, still reproducible).
    """
    if config.train.deterministic:
        return make_dataset_fn(config, spec, True, config.train.train_batch_size, image_size,
                               skip_batches=start_step * local_replicas(strategy))
    reseeded = config.override(seed=config.train.seed + start_step)
    return make_dataset_fn(reseeded, spec, True, config.train.train_batch_size, image_size)


def skipping(fn, batches: int):
    """`fn` with its first `batches` batches dropped (a resumed run of a custom dataset)."""
    return fn if not batches else (lambda ctx: fn(ctx).skip(batches))
