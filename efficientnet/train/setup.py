"""What a run sets up before it trains or evaluates: model spec, sizes, model, numerics, seeds."""

from __future__ import annotations

from collections.abc import Callable

import keras
import tensorflow as tf

from efficientnet.config.schema import ConfigError, Experiment

ModelFn = Callable[[Experiment, int], keras.Model]
DatasetFn = Callable[[tf.distribute.InputContext], tf.data.Dataset]


def model_spec(config: Experiment, required: bool = True):
    """The zoo's ModelSpec of --model_name; None for an unknown name unless `required`."""
    from efficientnet.models import get_spec

    try:
        return get_spec(config.model.model_name)
    except ValueError as error:
        if not required:
            return None
        raise ConfigError(str(error)) from None


def image_sizes(config: Experiment, spec) -> tuple[int, int]:
    """(train, eval) resolution: --image_size for both, else the spec's."""
    if config.model.image_size:
        return config.model.image_size, config.model.image_size
    if spec is None:
        raise ConfigError("--image_size is required with a custom model")
    return spec.train_size, spec.eval_size


def default_model_fn(config: Experiment, image_size: int) -> keras.Model:
    """The zoo model of the experiment at `image_size`, with fused batch norm."""
    from efficientnet.models import build
    from efficientnet.train.fused_batch_norm import FusedBatchNormalization

    model = config.model
    return build(model.model_name, num_classes=model.num_label_classes, image_size=image_size,
                 dropout_rate=model.dropout_rate, drop_connect_rate=model.drop_connect_rate,
                 batch_norm_layer=FusedBatchNormalization)


def check_batches(config: Experiment, strategy) -> None:
    """Both global batches must split evenly over the replicas."""
    replicas = strategy.num_replicas_in_sync
    for name in ("train_batch_size", "eval_batch_size"):
        value = getattr(config.train, name)
        if value % replicas:
            raise ConfigError(
                f"--{name}={value} is not divisible by the {replicas} replicas of this run "
                f"({type(strategy).__name__}); use a multiple of {replicas}")


def set_numerics(config: Experiment) -> None:
    """Precision policy, random seeds and (with --deterministic) op determinism."""
    keras.mixed_precision.set_global_policy(config.train.precision)
    keras.utils.set_random_seed(config.train.seed)
    if config.train.deterministic:
        tf.config.experimental.enable_op_determinism()
