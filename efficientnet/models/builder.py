"""One builder for every model in the zoo, driven by `ModelSpec` data.

Only `keras.layers` and `keras.ops` are used, so the models run on every Keras backend.

Layer names follow one pattern, `<scope>_<role>`, where scope is `stem`, `blocks_<i>` or `head`
and role names what the layer does (`expand_conv`, `dw_bn`, `se_reduce`, ...). The TF1 checkpoint
names of REFERENCE.md section 5 are derived from those names by `tf1_variable_names`, so the
mapping survives saving and reloading a model and never depends on layer creation order.
"""

from __future__ import annotations

import math
import re
import sys

import keras
from keras import layers, ops

from efficientnet.models.specs import BlockArgs, ModelSpec, get_spec

_ACTIVATIONS = {"swish": "silu", "relu": "relu", "relu6": "relu6"}


def _conv_initializer():
    # TF EfficientNet: normal(0, sqrt(2 / fan_out)), fan_out = k * k * out_filters.
    return keras.initializers.VarianceScaling(
        scale=2.0, mode="fan_out", distribution="untruncated_normal"
    )


def _dense_initializer(num_classes: int):
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


class _Builder:
    """Builds the functional graph of one `ModelSpec`."""

    def __init__(self, spec: ModelSpec, drop_connect_rate: float, batch_norm_layer=None):
        self.spec = spec
        self.drop_connect_rate = drop_connect_rate
        self.batch_norm_layer = batch_norm_layer or layers.BatchNormalization
        self.activation = _ACTIVATIONS[spec.activation]

    def conv(self, x, filters, kernel_size, name, strides=1, use_bias=False, activation=None):
        return layers.Conv2D(
            filters, kernel_size, strides=strides, padding="same", use_bias=use_bias,
            activation=activation, kernel_initializer=_conv_initializer(), name=name,
        )(x)

    def bn(self, x, name):
        return self.batch_norm_layer(
            momentum=self.spec.bn_momentum, epsilon=self.spec.bn_epsilon, name=name
        )(x)

    def act(self, x, name):
        return layers.Activation(self.activation, name=name)(x)

    def stem(self, x):
        spec = self.spec
        filters = spec.round_filters(spec.stem_filters, skip=spec.fix_head_stem)
        x = self.conv(x, filters, 3, strides=2, name="stem_conv")
        return self.act(self.bn(x, "stem_bn"), "stem_act")

    def head(self, x, num_classes, include_top, dropout_rate):
        spec = self.spec
        filters = spec.round_filters(spec.head_filters, skip=spec.fix_head_stem)
        x = self.conv(x, filters, 1, name="head_conv")
        x = self.act(self.bn(x, "head_bn"), "head_act")
        if not include_top:
            return x
        x = layers.GlobalAveragePooling2D(name="head_pool")(x)
        if dropout_rate > 0:
            x = layers.Dropout(dropout_rate, name="head_dropout")(x)
        # float32 logits under mixed precision keep softmax / loss numerically safe.
        return layers.Dense(
            num_classes, kernel_initializer=_dense_initializer(num_classes),
            dtype="float32", name="head_dense",
        )(x)

    def stages(self) -> list[BlockArgs]:
        """Expands the stage table into one `BlockArgs` per block, scaled by width and depth."""
        spec = self.spec
        blocks = []
        last = len(spec.blocks) - 1
        for index, stage in enumerate(spec.blocks):
            fixed = spec.fix_head_stem and index in (0, last)
            first = BlockArgs(
                **{
                    **stage.__dict__,
                    "input_filters": spec.round_filters(stage.input_filters),
                    "output_filters": spec.round_filters(stage.output_filters),
                    "num_repeat": spec.round_repeats(stage.num_repeat, skip=fixed),
                }
            )
            blocks.append(first)
            repeat = BlockArgs(
                **{**first.__dict__, "input_filters": first.output_filters, "strides": 1}
            )
            blocks.extend([repeat] * (first.num_repeat - 1))
        return blocks

    def block(self, x, args: BlockArgs, prefix: str, drop_rate: float):
        spec = self.spec
        inputs = x
        filters = args.input_filters * args.expand_ratio
        fused = args.conv_type == 1
        experts = spec.condconv_num_experts if args.condconv else 0
        routing = None
        if experts:
            pooled = layers.GlobalAveragePooling2D(name=f"{prefix}_routing_pool")(x)
            routing = layers.Dense(experts, activation="sigmoid", name=f"{prefix}_routing")(pooled)

        if fused:
            if args.expand_ratio != 1:
                x = self.conv(x, filters, args.kernel_size, strides=args.strides,
                              name=f"{prefix}_fused_conv")
                x = self.act(self.bn(x, f"{prefix}_fused_bn"), f"{prefix}_fused_act")
        else:
            if args.expand_ratio != 1:
                if experts:
                    x = CondConv1x1(filters, experts, name=f"{prefix}_expand_conv")([x, routing])
                else:
                    x = self.conv(x, filters, 1, name=f"{prefix}_expand_conv")
                x = self.act(self.bn(x, f"{prefix}_expand_bn"), f"{prefix}_expand_act")
            if experts:
                x = DepthwiseCondConv(
                    args.kernel_size, args.strides, experts, name=f"{prefix}_dwconv"
                )([x, routing])
            else:
                x = layers.DepthwiseConv2D(
                    args.kernel_size, strides=args.strides, padding="same", use_bias=False,
                    depthwise_initializer=_conv_initializer(), name=f"{prefix}_dwconv",
                )(x)
            x = self.act(self.bn(x, f"{prefix}_dw_bn"), f"{prefix}_dw_act")

        if args.se_ratio:
            # SE width is a fraction of the block *input*, not of the expanded width.
            reduced = max(1, int(args.input_filters * args.se_ratio))
            squeezed = layers.GlobalAveragePooling2D(keepdims=True, name=f"{prefix}_se_pool")(x)
            squeezed = self.conv(squeezed, reduced, 1, use_bias=True, activation=self.activation,
                                 name=f"{prefix}_se_reduce")
            squeezed = self.conv(squeezed, filters, 1, use_bias=True, activation="sigmoid",
                                 name=f"{prefix}_se_expand")
            x = layers.Multiply(name=f"{prefix}_se_excite")([x, squeezed])

        # A fused block without expansion carries its kxk conv (and stride) in the projection.
        project_kernel = args.kernel_size if fused and args.expand_ratio == 1 else 1
        project_strides = args.strides if fused and args.expand_ratio == 1 else 1
        if experts:
            x = CondConv1x1(args.output_filters, experts, name=f"{prefix}_project_conv")(
                [x, routing]
            )
        else:
            x = self.conv(x, args.output_filters, project_kernel, strides=project_strides,
                          name=f"{prefix}_project_conv")
        x = self.bn(x, f"{prefix}_project_bn")
        if fused and args.expand_ratio == 1:
            x = self.act(x, f"{prefix}_project_act")

        if args.id_skip and args.strides == 1 and args.input_filters == args.output_filters:
            if drop_rate > 0:
                # Stochastic depth: drop the whole residual branch per example.
                x = layers.Dropout(drop_rate, noise_shape=(None, 1, 1, 1),
                                   name=f"{prefix}_drop")(x)
            x = layers.Add(name=f"{prefix}_add")([x, inputs])
        return x

    def __call__(self, image_size, num_classes, include_top, dropout_rate):
        inputs = keras.Input(shape=(image_size, image_size, 3), name="images")
        x = self.stem(inputs)
        blocks = self.stages()
        for index, args in enumerate(blocks):
            drop_rate = self.drop_connect_rate * index / len(blocks)
            x = self.block(x, args, f"blocks_{index}", drop_rate)
        outputs = self.head(x, num_classes, include_top, dropout_rate)
        return keras.Model(inputs, outputs, name=self.spec.name)


def _build_se_resnext(spec: ModelSpec, image_size, num_classes, include_top, dropout_rate,
                      batch_norm_layer=None):
    """SE-ResNeXt50 (32x4d), laid out like timm's `seresnext50_32x4d` (explicit symmetric pads)."""

    def conv(x, filters, kernel, strides, name, groups=1):
        if kernel > 1:
            x = layers.ZeroPadding2D(kernel // 2, name=f"{name}_pad")(x)
        return (GroupedConv2D if groups > 1 else layers.Conv2D)(
            filters, kernel, strides=strides, padding="valid", use_bias=False, groups=groups,
            kernel_initializer=_conv_initializer(), name=name,
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
    from efficientnet.models.specs import SE_RESNEXT50_STAGES

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
        x = layers.Dense(num_classes, kernel_initializer=_dense_initializer(num_classes),
                         dtype="float32", name="head_dense")(x)
    return keras.Model(inputs, x, name=spec.name)


def build(
    name: str,
    num_classes: int | None = None,
    image_size: int | None = None,
    include_top: bool = True,
    dropout_rate: float | None = None,
    drop_connect_rate: float | None = None,
    batch_norm_layer=None,
) -> keras.Model:
    """Builds model `name`; returns a Keras model mapping normalised images to float32 logits.

    Defaults come from the spec: `num_classes` (1000), `image_size` (the eval resolution),
    dropout and drop-connect. `include_top=False` returns the head feature map.
    `batch_norm_layer` replaces `keras.layers.BatchNormalization` with a subclass (same
    variables), e.g. the training engine's fused TensorFlow kernel.
    """
    spec = get_spec(name)
    num_classes = spec.num_classes if num_classes is None else int(num_classes)
    if num_classes < 1:
        raise ValueError(f"num_classes must be at least 1, got {num_classes}")
    image_size = spec.eval_size if image_size is None else int(image_size)
    if image_size < 16:
        raise ValueError(f"image_size must be at least 16 pixels, got {image_size}")
    dropout_rate = spec.dropout_rate if dropout_rate is None else float(dropout_rate)
    drop_connect_rate = spec.drop_connect_rate if drop_connect_rate is None else drop_connect_rate
    # Keras walks the functional graph recursively; V2-XL's ~1,000 layers exceed the default limit.
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 20000))
    if spec.family == "se-resnext":
        return _build_se_resnext(spec, image_size, num_classes, include_top, dropout_rate,
                                 batch_norm_layer)
    return _Builder(spec, float(drop_connect_rate), batch_norm_layer)(
        image_size, num_classes, include_top, dropout_rate)


# ---------------------------------------------------------------------------------------------
# TF1 checkpoint names (REFERENCE.md section 5).

_LAYER_NAME = re.compile(r"^(stem|head|blocks_\d+)_(\w+)$")
# Within one block TF1 numbers layers of a kind in call order; these are those orders.
_CONV_ROLES = ("fused_conv", "expand_conv", "project_conv")
_BN_ROLES = ("stem_bn", "bn", "fused_bn", "expand_bn", "dw_bn", "project_bn")
_FIXED_ROLES = {
    "dwconv": "depthwise_conv2d",
    "se_reduce": "se/conv2d",
    "se_expand": "se/conv2d_1",
    "routing": "dense",
    "dense": "dense",
}
_VARIABLE_NAMES = {
    ("DepthwiseConv2D", "kernel"): "depthwise_kernel",
}


def _numbered(base: str, index: int) -> str:
    return base if index == 0 else f"{base}_{index}"


def tf1_variable_names(model: keras.Model, scope: str | None = None) -> list[tuple[str, str]]:
    """Pairs (keras variable path, TF1 checkpoint name) for every variable of an EfficientNet.

    Names follow the published tensorflow/tpu and automl checkpoints (no `model/` sub-scope),
    e.g. `efficientnet-b0/blocks_0/depthwise_conv2d/depthwise_kernel`.
    """
    scope = scope or model.name
    roles_by_scope: dict[str, list[str]] = {}
    layers_with_weights = [layer for layer in model.layers if layer.weights]
    for layer in layers_with_weights:
        match = _LAYER_NAME.match(layer.name)
        if not match:
            raise ValueError(f"Layer {layer.name!r} does not follow the <scope>_<role> naming")
        roles_by_scope.setdefault(match.group(1), []).append(match.group(2))

    def tf1_layer_name(block_scope: str, role: str) -> str:
        roles = roles_by_scope[block_scope]
        if role in _FIXED_ROLES:
            return _FIXED_ROLES[role]
        if role.endswith("conv") and role not in ("dwconv",):
            convs = [r for r in _CONV_ROLES if r in roles] + [
                r for r in roles if r.endswith("conv") and r not in _CONV_ROLES + ("dwconv",)
            ]
            return _numbered("conv2d", convs.index(role))
        if role.endswith("bn"):
            bns = [r for r in _BN_ROLES if r in roles] + [
                r for r in roles if r.endswith("bn") and r not in _BN_ROLES
            ]
            return _numbered("tpu_batch_normalization", bns.index(role))
        raise ValueError(f"No TF1 name rule for layer role {role!r} in {block_scope}")

    pairs = []
    for layer in layers_with_weights:
        block_scope, role = _LAYER_NAME.match(layer.name).groups()
        tf1_layer = tf1_layer_name(block_scope, role)
        for variable in layer.weights:
            short = variable.path.rsplit("/", 1)[-1]
            short = _VARIABLE_NAMES.get((type(layer).__name__, short), short)
            pairs.append((variable.path, f"{scope}/{block_scope}/{tf1_layer}/{short}"))
    return pairs
