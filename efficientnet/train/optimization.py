"""Learning-rate schedules, optimizers, weight decay, label smoothing and the weight EMA."""

from __future__ import annotations

import math

import keras
import tensorflow as tf

from efficientnet.config.schema import Experiment
from efficientnet.train.checkpointing import tf_variable
from efficientnet.train.rmsprop import TF1RMSprop


def learning_rate_fn(config: Experiment):
    """Returns f(step) -> float32 learning rate for `config` (works on tensors and ints).

    Warmup is linear from 0 over `warmup_epochs`; then:
    exponential: lr * decay_factor ** floor(step / (decay_epochs * steps_per_epoch)) (tensorflow/tpu;
    like it, the decay counts from step 0, not from the end of warmup);
    linear: from lr down to min_learning_rate at train_steps; cosine: half cosine to
    min_learning_rate at train_steps; constant: lr.
    """
    peak = config.peak_learning_rate
    steps_per_epoch = config.steps_per_epoch
    warmup_steps = float(config.schedule.warmup_epochs * steps_per_epoch)
    total = float(config.train.train_steps)
    floor_lr = config.schedule.min_learning_rate
    kind = config.schedule.lr_schedule
    decay_steps = max(config.schedule.lr_decay_epochs * steps_per_epoch, 1.0)

    def schedule(step):
        step = tf.cast(step, tf.float32)
        if kind == "exponential":
            lr = peak * tf.pow(config.schedule.lr_decay_factor, tf.floor(step / decay_steps))
        elif kind == "constant":
            lr = tf.constant(peak, tf.float32)
        else:
            span = max(total - warmup_steps, 1.0)
            progress = tf.clip_by_value((step - warmup_steps) / span, 0.0, 1.0)
            if kind == "linear":
                lr = floor_lr + (peak - floor_lr) * (1.0 - progress)
            else:  # cosine
                lr = floor_lr + 0.5 * (peak - floor_lr) * (1.0 + tf.cos(math.pi * progress))
        if warmup_steps > 0:
            lr = tf.where(step < warmup_steps, peak * step / warmup_steps, lr)
        return tf.cast(lr, tf.float32)

    return schedule


def build_optimizer(config: Experiment, learning_rate):
    """The optimizer of `config` (wrapped in a dynamic LossScaleOptimizer for mixed_float16)."""
    if config.optimizer.optimizer == "rmsprop":
        optimizer = TF1RMSprop(
            learning_rate=learning_rate, rho=config.optimizer.rmsprop_decay, momentum=config.optimizer.momentum,
            epsilon=config.optimizer.rmsprop_epsilon)
    elif config.optimizer.optimizer == "momentum":
        optimizer = keras.optimizers.SGD(
            learning_rate=learning_rate, momentum=config.optimizer.momentum, nesterov=config.optimizer.nesterov)
    else:  # sgd
        optimizer = keras.optimizers.SGD(learning_rate=learning_rate, momentum=0.0)
    if config.train.precision == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def decayed_variables(variables) -> list:
    """Variables that get L2 weight decay: kernels (ndim > 1); BN parameters and biases do not."""
    return [v for v in variables if len(v.shape) > 1]


def l2_loss(variables) -> tf.Tensor:
    """sum(v**2) / 2 over `variables` in float32 (tf.nn.l2_loss convention of tensorflow/tpu)."""
    terms = [tf.nn.l2_loss(tf.cast(v, tf.float32)) for v in variables]
    return tf.add_n(terms) if terms else tf.constant(0.0)


def cross_entropy(labels, logits, label_smoothing: float) -> tf.Tensor:
    """Per-example softmax cross entropy with label smoothing; labels: one-hot / mixed [B, C]."""
    logits = tf.cast(logits, tf.float32)
    labels = tf.cast(labels, tf.float32)
    if label_smoothing > 0:
        num_classes = tf.cast(tf.shape(labels)[-1], tf.float32)
        labels = labels * (1.0 - label_smoothing) + label_smoothing / num_classes
    return tf.nn.softmax_cross_entropy_with_logits(labels=labels, logits=logits)


class WeightAverage(tf.Module):
    """Exponential moving average of model weights, as tf.train.ExponentialMovingAverage with
    num_updates: decay = min(decay, (1 + step) / (10 + step)), so short runs are not stuck at
    the initial weights. Averages every floating-point weight (trainable ones and BN moving
    statistics); integer state such as a Normalization layer's `count` is not averaged.
    """

    def __init__(self, weights: dict, decay: float):
        super().__init__(name="ema")
        self.decay = decay
        self.sources = {
            path: tf_variable(v) for path, v in weights.items()
            if tf.as_dtype(tf_variable(v).dtype).is_floating
        }
        # Created in the caller's strategy scope: mirrored exactly like the model weights.
        self.averages = {
            path: tf.Variable(tf.convert_to_tensor(variable), trainable=False,
                              name=path.replace("/", "_") + "_ema")
            for path, variable in self.sources.items()
        }

    def update(self, step, strategy: tf.distribute.Strategy) -> None:
        """Updates every average; call in cross-replica context after the optimizer step."""
        step = tf.cast(step, tf.float32)
        decay = tf.minimum(self.decay, (1.0 + step) / (10.0 + step))

        def _update(average, value):
            return average.assign(decay * average + (1.0 - decay) * tf.cast(value, average.dtype))

        for path, average in self.averages.items():
            strategy.extended.update(average, _update, args=(self.sources[path],), group=False)

    def swap(self) -> None:
        """Exchanges model weights and averages (call twice to undo); eager, cross-replica."""
        for path, average in self.averages.items():
            variable = self.sources[path]
            saved = tf.identity(variable)
            variable.assign(average)
            average.assign(saved)
