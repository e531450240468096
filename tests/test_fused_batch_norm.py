"""The engine's fused BatchNormalization equals Keras' own: outputs, gradients, statistics."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from efficientnet import models
from efficientnet.train.fused_batch_norm import FusedBatchNormalization


def _run(layer_class, inputs, dtype="float32"):
    layer = layer_class(momentum=0.9, epsilon=1e-3, dtype=dtype)
    layer.build(inputs.shape)
    layer.gamma.assign(np.linspace(0.5, 1.5, inputs.shape[-1]))
    layer.beta.assign(np.linspace(-1, 1, inputs.shape[-1]))
    weights = tf.sin(tf.range(tf.size(inputs), dtype=tf.float32))
    weights = tf.reshape(weights, inputs.shape)
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        outputs = layer(inputs, training=True)
        loss = tf.reduce_sum(tf.cast(outputs, tf.float32) * weights)
    grads = tape.gradient(loss, [inputs, layer.gamma, layer.beta])
    return outputs, grads, layer


def test_fused_training_step_matches_keras_batch_norm():
    inputs = tf.random.stateless_normal((4, 6, 6, 5), seed=(1, 2)) * 3.0 + 1.0
    keras_out, keras_grads, keras_layer = _run(keras.layers.BatchNormalization, inputs)
    fused_out, fused_grads, fused_layer = _run(FusedBatchNormalization, inputs)
    np.testing.assert_allclose(fused_out, keras_out, atol=1e-5)
    for fused, reference in zip(fused_grads, keras_grads):
        np.testing.assert_allclose(fused, reference, rtol=1e-4, atol=1e-4)
    # Moving statistics: Keras semantics (biased batch variance), momentum 0.9.
    np.testing.assert_allclose(fused_layer.moving_mean, keras_layer.moving_mean, atol=1e-6)
    np.testing.assert_allclose(fused_layer.moving_variance, keras_layer.moving_variance,
                               rtol=1e-5)
    batch_variance = np.var(inputs.numpy(), axis=(0, 1, 2))
    np.testing.assert_allclose(fused_layer.moving_variance, 0.9 + 0.1 * batch_variance,
                               rtol=1e-5)


def test_inference_and_frozen_layers_use_moving_statistics():
    inputs = tf.random.stateless_normal((2, 4, 4, 3), seed=(3, 4))
    layer = FusedBatchNormalization()
    layer.build(inputs.shape)
    layer.moving_mean.assign([1.0, 2.0, 3.0])
    np.testing.assert_allclose(layer(inputs, training=False),
                               (inputs - [1.0, 2.0, 3.0]) / np.sqrt(1 + 1e-3), atol=1e-5)
    layer.trainable = False
    np.testing.assert_allclose(layer(inputs, training=True), layer(inputs, training=False))


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_fused_batch_norm_under_mixed_precision(policy):
    inputs = tf.random.stateless_normal((2, 4, 4, 3), seed=(5, 6))
    outputs, grads, layer = _run(FusedBatchNormalization, inputs, dtype=policy)
    assert layer.compute_dtype == policy.split("_")[1]
    assert keras.backend.standardize_dtype(outputs.dtype) == policy.split("_")[1]
    assert all(np.isfinite(g.numpy()).all() for g in grads)


def test_model_built_with_fused_layer_has_the_same_variables():
    plain = models.build("efficientnet-b0", image_size=32, num_classes=3)
    fused = models.build("efficientnet-b0", image_size=32, num_classes=3,
                         batch_norm_layer=FusedBatchNormalization)
    assert [v.path for v in plain.weights] == [v.path for v in fused.weights]
    assert isinstance(fused.get_layer("blocks_3_dw_bn"), FusedBatchNormalization)
    assert dict(models.tf1_variable_names(plain)) == dict(models.tf1_variable_names(fused))
