"""Initialisers and the custom layers of the zoo (grouped and conditionally parameterised convs);
`keras.layers` / `keras.ops` only."""

from __future__ import annotations

import math

import keras
from keras import layers, ops


def conv_initializer():
    # TF EfficientNet: normal(0, sqrt(2 / fan_out)), fan_out = k * k * out_filters.
    return keras.initializers.VarianceScaling(
        scale=2.0, mode="fan_out", distribution="untruncated_normal"
    )


def dense_initializer(num_classes: int):
    limit = 1.0 / math.sqrt(num_classes)
    return keras.initializers.RandomUniform(-limit, limit)


@keras.saving.register_keras_serializable(package="efficientnet")
class GroupedConv2D(layers.Conv2D):
    """`Conv2D` with `groups > 1`, computed as one convolution per group on TensorFlow.

    Keras runs grouped convolutions on TensorFlow through an XLA-compiled function, which is
    slow on CPU and which tf2onnx cannot convert. Splitting the channels (same kernel variable,
    same result) keeps the graph to plain Conv2D ops; other backends use their native kernel.
    """

    def convolution_op(self, inputs, kernel):
        if self.groups == 1 or keras.backend.backend() != "tensorflow":
            return super().convolution_op(inputs, kernel)
        axis = -1 if self.data_format == "channels_last" else 1
        # Kernel (kh, kw, in / groups, out): group g's outputs are the g-th slice of `out`.
        outputs = [
            ops.conv(x, k, strides=list(self.strides), padding=self.padding,
                     dilation_rate=self.dilation_rate, data_format=self.data_format)
            for x, k in zip(ops.split(inputs, self.groups, axis=axis),
                            ops.split(kernel, self.groups, axis=-1))
        ]
        return ops.concatenate(outputs, axis=axis)


class CondConv1x1(layers.Layer):
    """1x1 conditionally parameterised convolution: per-example kernel = routing @ experts."""

    def __init__(self, filters: int, num_experts: int, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.num_experts = num_experts

    def build(self, input_shape):
        features_shape, _ = input_shape
        self.kernel = self.add_weight(
            name="condconv_conv_kernel",
            shape=(self.num_experts, features_shape[-1], self.filters),
            initializer=keras.initializers.RandomNormal(stddev=math.sqrt(2.0 / self.filters)),
        )

    def call(self, inputs):
        features, routing = inputs
        kernel = ops.einsum("be,eio->bio", ops.cast(routing, self.compute_dtype), self.kernel)
        return ops.einsum("bhwi,bio->bhwo", features, kernel)

    def compute_output_shape(self, input_shape):
        return (*input_shape[0][:-1], self.filters)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "num_experts": self.num_experts}


class DepthwiseCondConv(layers.Layer):
    """Depthwise CondConv: one depthwise kernel per expert, mixed per example by the routing.

    The convolution is linear in its kernel, so mixing the expert outputs with the routing
    weights equals convolving with the mixed kernel (the TF1 formulation), without a per-example
    loop.
    """

    def __init__(self, kernel_size: int, strides: int, num_experts: int, **kwargs):
        super().__init__(**kwargs)
        self.kernel_size = kernel_size
        self.strides = strides
        self.num_experts = num_experts

    def build(self, input_shape):
        features_shape, _ = input_shape
        self.channels = features_shape[-1]
        k = self.kernel_size
        self.kernel = self.add_weight(
            name="condconv_depthwise_kernel",
            shape=(k, k, self.channels, self.num_experts),
            initializer=keras.initializers.RandomNormal(stddev=math.sqrt(2.0 / (k * k))),
        )

    def call(self, inputs):
        features, routing = inputs
        expert_outputs = ops.depthwise_conv(
            features, self.kernel, strides=self.strides, padding="same"
        )
        shape = ops.shape(expert_outputs)
        expert_outputs = ops.reshape(
            expert_outputs, (shape[0], shape[1], shape[2], self.channels, self.num_experts)
        )
        return ops.einsum(
            "bhwce,be->bhwc", expert_outputs, ops.cast(routing, self.compute_dtype)
        )

    def compute_output_shape(self, input_shape):
        batch, height, width, channels = input_shape[0]

        def out(size):
            return None if size is None else -(-size // self.strides)

        return (batch, out(height), out(width), channels)

    def get_config(self):
        return {
            **super().get_config(),
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "num_experts": self.num_experts,
        }
