"""A BatchNormalization that trains with TensorFlow's fused kernel.

Keras 3 computes batch moments and the normalisation as separate ops on the TensorFlow backend;
on CPU that makes BatchNorm the most expensive part of an EfficientNet training step (measured by
`benchmarks/train_speed.py`). This subclass keeps the Keras variables (gamma, beta, moving_mean,
moving_variance: same names, same checkpoints) and the Keras semantics (moving variance without
Bessel's correction), and runs `FusedBatchNormV3` in training. Inference, frozen layers and other
shapes use the Keras implementation. The models package stays backend-neutral: the training
engine hands this class to `efficientnet.models.build(batch_norm_layer=...)`.
"""

from __future__ import annotations

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="efficientnet")
class FusedBatchNormalization(keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization` with a fused training kernel on TensorFlow."""

    def _can_fuse(self, inputs, training, mask) -> bool:
        return (
            bool(training) and self.trainable and mask is None and len(inputs.shape) == 4
            and self.axis in (-1, 3) and not self.renorm and not self.synchronized
            and inputs.dtype in (tf.float32, tf.float16, tf.bfloat16)
        )

    def call(self, inputs, training=None, mask=None):
        if not self._can_fuse(inputs, training, mask):
            return super().call(inputs, training=training, mask=mask)
        channels = inputs.shape[-1]
        scale = tf.cast(self.gamma, tf.float32) if self.scale else tf.ones([channels])
        offset = tf.cast(self.beta, tf.float32) if self.center else tf.zeros([channels])
        outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(
            inputs, scale, offset, epsilon=self.epsilon, data_format="NHWC", is_training=True)
        # The kernel returns the unbiased variance; Keras' moving variance uses the biased one.
        count = tf.cast(tf.size(inputs) // channels, tf.float32)
        variance = variance * (count - 1.0) / tf.maximum(count, 1.0)
        momentum = self.momentum
        self.moving_mean.assign(
            self.moving_mean * momentum + tf.cast(mean, self.moving_mean.dtype) * (1 - momentum))
        self.moving_variance.assign(
            self.moving_variance * momentum
            + tf.cast(variance, self.moving_variance.dtype) * (1 - momentum))
        return tf.cast(outputs, self.compute_dtype)
