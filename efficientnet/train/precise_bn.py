"""Precise BN (pycls): BN moving statistics recomputed as exact moments over training batches.

BN momentum 0.99 averages over ~100 steps whose weights have since moved: in a short run those
statistics no longer fit the weights that are evaluated. `recompute_batch_norm` replaces them by
the exact mean and variance of each layer's input over N training batches, run with the current
weights, dropout and drop-connect off. Frozen BN layers keep theirs.
"""

from __future__ import annotations

import contextlib

import keras
import tensorflow as tf

from efficientnet.config.schema import ConfigError


@contextlib.contextmanager
def batch_moments_mode(norms: list, dropouts: list):
    """Within: a training call leaves each BN layer's batch moments in its moving statistics
    (momentum 0; each replica in its own copy: BN statistics are not synchronised), with dropout
    and drop-connect off. Their means over replicas and batches are the exact moments over all
    the images (equal sizes: training batches drop the remainder)."""
    momenta = [layer.momentum for layer in norms]
    rates = [layer.rate for layer in dropouts]
    for layer in norms:
        layer.momentum = 0.0
    for layer in dropouts:
        layer.rate = 0.0
    try:
        yield
    finally:
        for layer, momentum in zip(norms, momenta):
            layer.momentum = momentum
        for layer, rate in zip(dropouts, rates):
            layer.rate = rate


def trainable_batch_norms(model: keras.Model) -> list:
    return [layer for layer in model._flatten_layers(include_self=False)
            if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable]


def recompute_batch_norm(model: keras.Model, strategy, dataset_fn, batches: int) -> int:
    """Sets the moving statistics of `model`'s trainable BN layers to the exact moments of their
    inputs over `batches` batches of `dataset_fn` (per replica, averaged over replicas); returns
    the number of batches used (0 without trainable BN layers)."""
    norms = trainable_batch_norms(model)
    if not norms:
        return 0
    dropouts = [layer for layer in model._flatten_layers(include_self=False)
                if isinstance(layer, keras.layers.Dropout)]
    with batch_moments_mode(norms, dropouts):

        def replica_moments(images, labels):
            model(images, training=True)
            moments = []
            for layer in norms:
                mean = tf.cast(layer.moving_mean, tf.float64)
                moments += [mean, tf.cast(layer.moving_variance, tf.float64) + mean * mean]
            return moments

        @tf.function
        def moments_of(batch):
            per_replica = strategy.run(replica_moments, args=batch)
            return strategy.reduce(tf.distribute.ReduceOp.MEAN, per_replica, axis=None)

        sums = None
        used = 0
        for batch in strategy.distribute_datasets_from_function(dataset_fn):
            if used == batches:
                break
            moments = moments_of(batch)
            sums = moments if sums is None else [a + b for a, b in zip(sums, moments)]
            used += 1
        if used == 0:
            raise ConfigError("--precise_bn_batches: the training data gave no batch")
        for index, layer in enumerate(norms):
            mean = sums[2 * index] / used
            variance = tf.maximum(sums[2 * index + 1] / used - mean * mean, 0.0)
            layer.moving_mean.assign(tf.cast(mean, layer.moving_mean.dtype))
            layer.moving_variance.assign(tf.cast(variance, layer.moving_variance.dtype))
    return used
