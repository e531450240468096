"""One builder for every model in the zoo, driven by `ModelSpec` data.

Only `keras.layers` and `keras.ops` are used, so the models run on every Keras backend.

Layer names follow one pattern, `<scope>_<role>`, where scope is `stem`, `blocks_<i>` or `head`
and role names what the layer does (`expand_conv`, `dw_bn`, `se_reduce`, ...). The TF1 checkpoint
names (docs/reference.md#checkpoint-variable-names) are derived from those names by
`tf1_variable_names`, so the mapping survives saving and reloading a model and never depends on
layer creation order.

EfficientNet-family blocks are one function per type: `mbconv_block`, `fused_mbconv_block` (V2)
and `condconv_mbconv_block`; SE-ResNeXt is built by `efficientnet.models.resnext`.
"""

from __future__ import annotations

import re
import sys

import keras
from keras import layers

from efficientnet.models.layers import (
    CondConv1x1,
    DepthwiseCondConv,
    conv_initializer,
    dense_initializer,
)
from efficientnet.models.resnext import build_se_resnext
from efficientnet.models.specs import BlockArgs, ModelSpec, get_spec

_ACTIVATIONS = {"swish": "silu", "relu": "relu", "relu6": "relu6"}


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
            activation=activation, kernel_initializer=conv_initializer(), name=name,
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
            num_classes, kernel_initializer=dense_initializer(num_classes),
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
        """One block of the type `args` asks for, named `<prefix>_<role>`."""
        if args.conv_type == 1:
            return fused_mbconv_block(self, x, args, prefix, drop_rate)
        if args.condconv and self.spec.condconv_num_experts:
            return condconv_mbconv_block(self, x, args, prefix, drop_rate)
        return mbconv_block(self, x, args, prefix, drop_rate)

    def __call__(self, image_size, num_classes, include_top, dropout_rate):
        inputs = keras.Input(shape=(image_size, image_size, 3), name="images")
        x = self.stem(inputs)
        blocks = self.stages()
        for index, args in enumerate(blocks):
            drop_rate = self.drop_connect_rate * index / len(blocks)
            x = self.block(x, args, f"blocks_{index}", drop_rate)
        outputs = self.head(x, num_classes, include_top, dropout_rate)
        return keras.Model(inputs, outputs, name=self.spec.name)


def mbconv_block(b: _Builder, x, args: BlockArgs, prefix: str, drop_rate: float):
    """MBConv (MobileNetV2 inverted residual + SE): [1x1 expand] -> kxk depthwise -> SE -> 1x1
    project -> [stochastic depth + skip]."""
    inputs = x
    filters = args.input_filters * args.expand_ratio
    if args.expand_ratio != 1:
        x = b.conv(x, filters, 1, name=f"{prefix}_expand_conv")
        x = b.act(b.bn(x, f"{prefix}_expand_bn"), f"{prefix}_expand_act")
    x = layers.DepthwiseConv2D(
        args.kernel_size, strides=args.strides, padding="same", use_bias=False,
        depthwise_initializer=conv_initializer(), name=f"{prefix}_dwconv",
    )(x)
    x = b.act(b.bn(x, f"{prefix}_dw_bn"), f"{prefix}_dw_act")
    x = _squeeze_excite(b, x, args, filters, prefix)
    x = b.conv(x, args.output_filters, 1, name=f"{prefix}_project_conv")
    x = b.bn(x, f"{prefix}_project_bn")
    return _residual(x, inputs, args, prefix, drop_rate)


def fused_mbconv_block(b: _Builder, x, args: BlockArgs, prefix: str, drop_rate: float):
    """Fused MBConv (EfficientNetV2): kxk expand conv -> SE -> 1x1 project; without expansion
    the kxk conv (and its stride) is the projection, followed by the activation."""
    inputs = x
    filters = args.input_filters * args.expand_ratio
    expanded = args.expand_ratio != 1
    if expanded:
        x = b.conv(x, filters, args.kernel_size, strides=args.strides,
                   name=f"{prefix}_fused_conv")
        x = b.act(b.bn(x, f"{prefix}_fused_bn"), f"{prefix}_fused_act")
    x = _squeeze_excite(b, x, args, filters, prefix)
    x = b.conv(x, args.output_filters, 1 if expanded else args.kernel_size,
               strides=1 if expanded else args.strides, name=f"{prefix}_project_conv")
    x = b.bn(x, f"{prefix}_project_bn")
    if not expanded:
        x = b.act(x, f"{prefix}_project_act")
    return _residual(x, inputs, args, prefix, drop_rate)


def condconv_mbconv_block(b: _Builder, x, args: BlockArgs, prefix: str, drop_rate: float):
    """MBConv whose 1x1 and depthwise convs are CondConvs (arXiv:1904.04971): per-example
    kernels mixed from `condconv_num_experts` experts by a sigmoid routing of the pooled input."""
    inputs = x
    filters = args.input_filters * args.expand_ratio
    experts = b.spec.condconv_num_experts
    pooled = layers.GlobalAveragePooling2D(name=f"{prefix}_routing_pool")(x)
    routing = layers.Dense(experts, activation="sigmoid", name=f"{prefix}_routing")(pooled)
    if args.expand_ratio != 1:
        x = CondConv1x1(filters, experts, name=f"{prefix}_expand_conv")([x, routing])
        x = b.act(b.bn(x, f"{prefix}_expand_bn"), f"{prefix}_expand_act")
    x = DepthwiseCondConv(args.kernel_size, args.strides, experts,
                          name=f"{prefix}_dwconv")([x, routing])
    x = b.act(b.bn(x, f"{prefix}_dw_bn"), f"{prefix}_dw_act")
    x = _squeeze_excite(b, x, args, filters, prefix)
    x = CondConv1x1(args.output_filters, experts, name=f"{prefix}_project_conv")([x, routing])
    x = b.bn(x, f"{prefix}_project_bn")
    return _residual(x, inputs, args, prefix, drop_rate)


def _squeeze_excite(b: _Builder, x, args: BlockArgs, filters: int, prefix: str):
    """Squeeze-and-excitation over `filters` channels (none when the block has no se_ratio)."""
    if not args.se_ratio:
        return x
    # SE width is a fraction of the block *input*, not of the expanded width.
    reduced = max(1, int(args.input_filters * args.se_ratio))
    squeezed = layers.GlobalAveragePooling2D(keepdims=True, name=f"{prefix}_se_pool")(x)
    squeezed = b.conv(squeezed, reduced, 1, use_bias=True, activation=b.activation,
                      name=f"{prefix}_se_reduce")
    squeezed = b.conv(squeezed, filters, 1, use_bias=True, activation="sigmoid",
                      name=f"{prefix}_se_expand")
    return layers.Multiply(name=f"{prefix}_se_excite")([x, squeezed])


def _residual(x, inputs, args: BlockArgs, prefix: str, drop_rate: float):
    """The skip connection (same shape in and out), with stochastic depth on the branch."""
    if not (args.id_skip and args.strides == 1 and args.input_filters == args.output_filters):
        return x
    if drop_rate > 0:
        # Stochastic depth: drop the whole residual branch per example.
        x = layers.Dropout(drop_rate, noise_shape=(None, 1, 1, 1), name=f"{prefix}_drop")(x)
    return layers.Add(name=f"{prefix}_add")([x, inputs])


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
        return build_se_resnext(spec, image_size, num_classes, include_top, dropout_rate,
                                 batch_norm_layer)
    return _Builder(spec, float(drop_connect_rate), batch_norm_layer)(
        image_size, num_classes, include_top, dropout_rate)


# ---------------------------------------------------------------------------------------------
# TF1 checkpoint names (docs/reference.md#checkpoint-variable-names).

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
