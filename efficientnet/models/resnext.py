"""SE-ResNeXt50 (32x4d): a ResNeXt with squeeze-and-excitation (arXiv:1709.01507), laid out like
timm's `seresnext50_32x4d`. It shares the zoo's spec fields (BN settings, preprocessing, head), its
layer names (`stem_*`, `blocks_<i>_*`, `head_*`) and `build`, but not the EfficientNet blocks:
its stages are the `SE_RESNEXT50_STAGES` table of specs.py."""

from __future__ import annotations

import keras
from keras import layers

from efficientnet.models.layers import GroupedConv2D, conv_initializer, dense_initializer
from efficientnet.models.specs import SE_RESNEXT50_STAGES, ModelSpec


def build_se_resnext(spec: ModelSpec, image_size, num_classes, include_top, dropout_rate,
                      batch_norm_layer=None):
    """SE-ResNeXt50 (32x4d), laid out like timm's `seresnext50_32x4d` (explicit symmetric pads)."""

    def conv(x, filters, kernel, strides, name, groups=1):
        if kernel > 1:
            x = layers.ZeroPadding2D(kernel // 2, name=f"{name}_pad")(x)
        return (GroupedConv2D if groups > 1 else layers.Conv2D)(
            filters, kernel, strides=strides, padding="valid", use_bias=False, groups=groups,
            kernel_initializer=conv_initializer(), name=name,
        )(x)

    def bn(x, name):
        return (batch_norm_layer or layers.BatchNormalization)(
            momentum=spec.bn_momentum, epsilon=spec.bn_epsilon, name=name)(x)

    inputs = keras.Input(shape=(image_size, image_size, 3), name="images")
    x = conv(inputs, spec.stem_filters, 7, 2, "stem_conv")
    x = layers.ReLU(name="stem_act")(bn(x, "stem_bn"))
    x = layers.ZeroPadding2D(1, name="stem_pool_pad")(x)
    x = layers.MaxPooling2D(3, strides=2, name="stem_pool")(x)
    index = 0
    for repeats, stage_stride, width, out_filters in SE_RESNEXT50_STAGES:
        for repeat in range(repeats):
            prefix = f"blocks_{index}"
            strides = stage_stride if repeat == 0 else 1
            shortcut = x
            y = conv(x, width, 1, 1, f"{prefix}_conv1")
            y = layers.ReLU(name=f"{prefix}_act1")(bn(y, f"{prefix}_bn1"))
            y = conv(y, width, 3, strides, f"{prefix}_conv2", groups=32)
            y = layers.ReLU(name=f"{prefix}_act2")(bn(y, f"{prefix}_bn2"))
            y = bn(conv(y, out_filters, 1, 1, f"{prefix}_conv3"), f"{prefix}_bn3")
            squeezed = layers.GlobalAveragePooling2D(keepdims=True, name=f"{prefix}_se_pool")(y)
            squeezed = layers.Conv2D(out_filters // 16, 1, activation="relu",
                                     name=f"{prefix}_se_reduce")(squeezed)
            squeezed = layers.Conv2D(out_filters, 1, activation="sigmoid",
                                     name=f"{prefix}_se_expand")(squeezed)
            y = layers.Multiply(name=f"{prefix}_se_excite")([y, squeezed])
            if repeat == 0:
                shortcut = bn(conv(x, out_filters, 1, strides, f"{prefix}_downsample_conv"),
                              f"{prefix}_downsample_bn")
            x = layers.ReLU(name=f"{prefix}_out")(layers.Add(name=f"{prefix}_add")([y, shortcut]))
            index += 1
    if include_top:
        x = layers.GlobalAveragePooling2D(name="head_pool")(x)
        if dropout_rate > 0:
            x = layers.Dropout(dropout_rate, name="head_dropout")(x)
        x = layers.Dense(num_classes, kernel_initializer=dense_initializer(num_classes),
                         dtype="float32", name="head_dense")(x)
    return keras.Model(inputs, x, name=spec.name)
