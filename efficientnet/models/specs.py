"""Model specifications: architecture and preprocessing metadata for every model name.

Each variant is one row of data fed to one builder (`builder.py`). The preprocessing fields
(resolution, mean/std, interpolation, crop padding) live here so the input pipeline and the
exporters read them from the same place as the architecture.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re

# Normalisation constants in the 0..255 pixel scale.
IMAGENET_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)
LITE_MEAN, LITE_STD = (127.0, 127.0, 127.0), (128.0, 128.0, 128.0)
V2_MEAN, V2_STD = (128.0, 128.0, 128.0), (128.0, 128.0, 128.0)


@dataclasses.dataclass(frozen=True)
class BlockArgs:
    """One stage of blocks, decoded from a TF block string such as `r1_k3_s11_e1_i32_o16_se0.25`."""

    num_repeat: int
    kernel_size: int
    strides: int
    expand_ratio: int
    input_filters: int
    output_filters: int
    se_ratio: float | None = None
    id_skip: bool = True
    conv_type: int = 0  # 0: MBConv (expand 1x1, depthwise, project); 1: fused (kxk conv, project)
    condconv: bool = False


_BLOCK_KEY = re.compile(r"^([a-z]+)(\d.*)?$")


def decode_block_string(block_string: str) -> BlockArgs:
    """Decodes a TF1 (`s11`) or automl V2 (`s1`) block string into `BlockArgs`."""
    options: dict[str, str] = {}
    flags: set[str] = set()
    for part in block_string.split("_"):
        match = _BLOCK_KEY.match(part)
        if not match:
            raise ValueError(f"Bad block string {block_string!r}: cannot parse {part!r}")
        key, value = match.groups()
        if value is None:
            flags.add(key)
        else:
            options[key] = value
    for required in ("r", "k", "s", "e", "i", "o"):
        if required not in options:
            raise ValueError(f"Bad block string {block_string!r}: missing '{required}'")
    strides = options["s"]
    if len(strides) == 2:
        if strides[0] != strides[1]:
            raise ValueError(f"Bad block string {block_string!r}: only square strides are supported")
        stride = int(strides[0])
    elif len(strides) == 1:
        stride = int(strides)
    else:
        raise ValueError(f"Bad block string {block_string!r}: strides must be 's1' or 's11'")
    return BlockArgs(
        num_repeat=int(options["r"]),
        kernel_size=int(options["k"]),
        strides=stride,
        expand_ratio=int(options["e"]),
        input_filters=int(options["i"]),
        output_filters=int(options["o"]),
        se_ratio=float(options["se"]) if "se" in options else None,
        id_skip="noskip" not in flags,
        conv_type=int(options.get("c", 0)),
        condconv="cc" in flags,
    )


def encode_block_args(block: BlockArgs, v2_style: bool = False) -> str:
    """Inverse of `decode_block_string` (TF1 `s11` style unless `v2_style`)."""
    stride = f"{block.strides}" if v2_style else f"{block.strides}{block.strides}"
    parts = [
        f"r{block.num_repeat}",
        f"k{block.kernel_size}",
        f"s{stride}",
        f"e{block.expand_ratio}",
        f"i{block.input_filters}",
        f"o{block.output_filters}",
    ]
    if block.conv_type:
        parts.append(f"c{block.conv_type}")
    if block.se_ratio:
        parts.append(f"se{block.se_ratio:g}")
    if not block.id_skip:
        parts.append("noskip")
    if block.condconv:
        parts.append("cc")
    return "_".join(parts)


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """Everything needed to build a model and to feed it correctly."""

    name: str
    family: str  # efficientnet | lite | edgetpu | condconv | v2 | se-resnext
    blocks: tuple[BlockArgs, ...]
    width_coefficient: float
    depth_coefficient: float
    train_size: int
    eval_size: int
    dropout_rate: float
    drop_connect_rate: float = 0.2
    bn_momentum: float = 0.99
    bn_epsilon: float = 1e-3
    activation: str = "swish"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: str = "bicubic"
    crop_padding: int = 32
    num_classes: int = 1000
    scope: str = ""  # checkpoint scope, e.g. "efficientnet-b0"
    stem_filters: int = 32
    head_filters: int = 1280
    fix_head_stem: bool = False  # Lite: stem/head and first/last stage repeats are not scaled
    depth_divisor: int = 8
    round_up_small_filters: bool = True  # TF1 adds a divisor when rounding loses >10%; V2 does not
    condconv_num_experts: int = 0
    published_top1: float | None = None

    @property
    def image_size(self) -> int:
        """The evaluation resolution (what published accuracy numbers use)."""
        return self.eval_size

    def round_filters(self, filters: int, skip: bool = False) -> int:
        """Scales a channel count by the width coefficient, rounded to a multiple of 8."""
        if skip or self.width_coefficient == 1.0:
            return int(filters)
        divisor = self.depth_divisor
        scaled = filters * self.width_coefficient
        rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
        if self.round_up_small_filters and rounded < 0.9 * scaled:
            rounded += divisor
        return int(rounded)

    def round_repeats(self, repeats: int, skip: bool = False) -> int:
        """Scales a stage depth by the depth coefficient (ceil)."""
        if skip:
            return int(repeats)
        return int(math.ceil(self.depth_coefficient * repeats))


# ---------------------------------------------------------------------------------------------
# The zoo as data.

_B0_BLOCKS = (
    "r1_k3_s11_e1_i32_o16_se0.25",
    "r2_k3_s22_e6_i16_o24_se0.25",
    "r2_k5_s22_e6_i24_o40_se0.25",
    "r3_k3_s22_e6_i40_o80_se0.25",
    "r3_k5_s11_e6_i80_o112_se0.25",
    "r4_k5_s22_e6_i112_o192_se0.25",
    "r1_k3_s11_e6_i192_o320_se0.25",
)
_LITE_BLOCKS = tuple(b.replace("_se0.25", "") for b in _B0_BLOCKS)
_CONDCONV_BLOCKS = _B0_BLOCKS[:4] + tuple(b + "_cc" for b in _B0_BLOCKS[4:])
_EDGETPU_BLOCKS = (
    "r1_k3_s11_e4_i24_o24_c1_noskip",
    "r2_k3_s22_e8_i24_o32_c1",
    "r4_k3_s22_e8_i32_o48_c1",
    "r5_k5_s22_e8_i48_o96",
    "r4_k5_s11_e8_i96_o144",
    "r2_k5_s22_e8_i144_o192",
)
_V2_BASE_BLOCKS = (
    "r1_k3_s1_e1_i32_o16_c1",
    "r2_k3_s2_e4_i16_o32_c1",
    "r2_k3_s2_e4_i32_o48_c1",
    "r3_k3_s2_e4_i48_o96_se0.25",
    "r5_k3_s1_e6_i96_o112_se0.25",
    "r8_k3_s2_e6_i112_o192_se0.25",
)
_V2_S_BLOCKS = (
    "r2_k3_s1_e1_i24_o24_c1",
    "r4_k3_s2_e4_i24_o48_c1",
    "r4_k3_s2_e4_i48_o64_c1",
    "r6_k3_s2_e4_i64_o128_se0.25",
    "r9_k3_s1_e6_i128_o160_se0.25",
    "r15_k3_s2_e6_i160_o256_se0.25",
)
_V2_M_BLOCKS = (
    "r3_k3_s1_e1_i24_o24_c1",
    "r5_k3_s2_e4_i24_o48_c1",
    "r5_k3_s2_e4_i48_o80_c1",
    "r7_k3_s2_e4_i80_o160_se0.25",
    "r14_k3_s1_e6_i160_o176_se0.25",
    "r18_k3_s2_e6_i176_o304_se0.25",
    "r5_k3_s1_e6_i304_o512_se0.25",
)
_V2_L_BLOCKS = (
    "r4_k3_s1_e1_i32_o32_c1",
    "r7_k3_s2_e4_i32_o64_c1",
    "r7_k3_s2_e4_i64_o96_c1",
    "r10_k3_s2_e4_i96_o192_se0.25",
    "r19_k3_s1_e6_i192_o224_se0.25",
    "r25_k3_s2_e6_i224_o384_se0.25",
    "r7_k3_s1_e6_i384_o640_se0.25",
)
_V2_XL_BLOCKS = (
    "r4_k3_s1_e1_i32_o32_c1",
    "r8_k3_s2_e4_i32_o64_c1",
    "r8_k3_s2_e4_i64_o96_c1",
    "r16_k3_s2_e4_i96_o192_se0.25",
    "r24_k3_s1_e6_i192_o256_se0.25",
    "r32_k3_s2_e6_i256_o512_se0.25",
    "r8_k3_s1_e6_i512_o640_se0.25",
)
# SE-ResNeXt50 32x4d bottleneck stages: (repeats, stride, bottleneck width, output channels).
SE_RESNEXT50_STAGES = ((3, 1, 128, 256), (4, 2, 256, 512), (6, 2, 512, 1024), (3, 2, 1024, 2048))


def _decode(block_strings) -> tuple[BlockArgs, ...]:
    return tuple(decode_block_string(s) for s in block_strings)


def _efficientnet_specs() -> list[ModelSpec]:
    rows = {  # width, depth, resolution, dropout, published top-1
        "b0": (1.0, 1.0, 224, 0.2, 77.1),
        "b1": (1.0, 1.1, 240, 0.2, 79.1),
        "b2": (1.1, 1.2, 260, 0.3, 80.1),
        "b3": (1.2, 1.4, 300, 0.3, 81.6),
        "b4": (1.4, 1.8, 380, 0.4, 82.9),
        "b5": (1.6, 2.2, 456, 0.4, 83.6),
        "b6": (1.8, 2.6, 528, 0.5, 84.0),
        "b7": (2.0, 3.1, 600, 0.5, 84.3),
        "b8": (2.2, 3.6, 672, 0.5, None),
        "l2": (4.3, 5.3, 800, 0.5, None),
    }
    blocks = _decode(_B0_BLOCKS)
    return [
        ModelSpec(
            name=f"efficientnet-{key}", family="efficientnet", blocks=blocks,
            width_coefficient=w, depth_coefficient=d, train_size=res, eval_size=res,
            dropout_rate=drop, scope=f"efficientnet-{key}", published_top1=top1,
        )
        for key, (w, d, res, drop, top1) in rows.items()
    ]


def _lite_specs() -> list[ModelSpec]:
    rows = {
        "lite0": (1.0, 1.0, 224, 0.2),
        "lite1": (1.0, 1.1, 240, 0.2),
        "lite2": (1.1, 1.2, 260, 0.3),
        "lite3": (1.2, 1.4, 280, 0.3),
        "lite4": (1.4, 1.8, 300, 0.3),
    }
    blocks = _decode(_LITE_BLOCKS)
    return [
        ModelSpec(
            name=f"efficientnet-{key}", family="lite", blocks=blocks, width_coefficient=w,
            depth_coefficient=d, train_size=res, eval_size=res, dropout_rate=drop,
            activation="relu6", mean=LITE_MEAN, std=LITE_STD, fix_head_stem=True,
            scope=f"efficientnet-{key}",
        )
        for key, (w, d, res, drop) in rows.items()
    ]


def _edgetpu_specs() -> list[ModelSpec]:
    rows = {"s": (1.0, 1.0, 224, 0.2), "m": (1.0, 1.1, 240, 0.2), "l": (1.2, 1.4, 300, 0.2)}
    blocks = _decode(_EDGETPU_BLOCKS)
    return [
        ModelSpec(
            name=f"efficientnet-edgetpu-{key}", family="edgetpu", blocks=blocks,
            width_coefficient=w, depth_coefficient=d, train_size=res, eval_size=res,
            dropout_rate=drop, activation="relu", mean=LITE_MEAN, std=LITE_STD,
            scope=f"efficientnet-edgetpu-{key.upper()}",
        )
        for key, (w, d, res, drop) in rows.items()
    ]


def _condconv_specs() -> list[ModelSpec]:
    rows = {"b0-4e": (1.0, 1.0, 4), "b0-8e": (1.0, 1.0, 8), "b0-8e-depth": (1.0, 1.1, 8)}
    blocks = _decode(_CONDCONV_BLOCKS)
    return [
        ModelSpec(
            name=f"efficientnet-condconv-{key}", family="condconv", blocks=blocks,
            width_coefficient=w, depth_coefficient=d, train_size=224, eval_size=224,
            dropout_rate=0.25, mean=LITE_MEAN, std=LITE_STD, condconv_num_experts=experts,
            scope=f"efficientnet-condconv-{key}",
        )
        for key, (w, d, experts) in rows.items()
    ]


def _v2_specs() -> list[ModelSpec]:
    # google/automl efficientnetv2/effnetv2_configs.py trains the B-variants with augname
    # 'effnetv1_autoaug', i.e. preprocess_legacy.py: V1 ImageNet mean/std, bicubic, centre crop
    # with padding 32 (keras efficientnet_v2.py: "original V1 preprocessing for Bx variants").
    # S/M/L/XL use preprocessing.py: (x - 128) / 128, TensorFlow's default resize (bilinear), and a
    # padded centre crop only below 320 px, so none at their 384-512 px eval sizes.
    rows = {  # blocks, width, depth, train size, eval size, dropout, published top-1
        "b0": (_V2_BASE_BLOCKS, 1.0, 1.0, 192, 224, 0.2, None),
        "b1": (_V2_BASE_BLOCKS, 1.0, 1.1, 192, 240, 0.2, None),
        "b2": (_V2_BASE_BLOCKS, 1.1, 1.2, 208, 260, 0.3, None),
        "b3": (_V2_BASE_BLOCKS, 1.2, 1.4, 240, 300, 0.3, None),
        "s": (_V2_S_BLOCKS, 1.0, 1.0, 300, 384, 0.2, 83.9),
        "m": (_V2_M_BLOCKS, 1.0, 1.0, 384, 480, 0.3, None),
        "l": (_V2_L_BLOCKS, 1.0, 1.0, 384, 480, 0.4, None),
        "xl": (_V2_XL_BLOCKS, 1.0, 1.0, 384, 512, 0.4, None),
    }
    v1_preprocessing = {"mean": IMAGENET_MEAN, "std": IMAGENET_STD, "interpolation": "bicubic",
                        "crop_padding": 32}
    return [
        ModelSpec(
            name=f"efficientnetv2-{key}", family="v2", blocks=_decode(blocks),
            width_coefficient=w, depth_coefficient=d, train_size=train, eval_size=evaluation,
            dropout_rate=drop, bn_momentum=0.9, bn_epsilon=1e-3,
            stem_filters=_decode(blocks)[0].input_filters, round_up_small_filters=False,
            scope=f"efficientnetv2-{key}",
            published_top1=top1,
            **(v1_preprocessing if key.startswith("b") else {
                "mean": V2_MEAN, "std": V2_STD, "interpolation": "bilinear",
                "crop_padding": 32 if evaluation < 320 else 0}),
        )
        for key, (blocks, w, d, train, evaluation, drop, top1) in rows.items()
    ]


def _se_resnext_specs() -> list[ModelSpec]:
    return [
        ModelSpec(
            name="se-resnext50", family="se-resnext", blocks=(), width_coefficient=1.0,
            depth_coefficient=1.0, train_size=224, eval_size=224, dropout_rate=0.0,
            drop_connect_rate=0.0, bn_momentum=0.9, bn_epsilon=1e-5, activation="relu",
            stem_filters=64, head_filters=2048, scope="se-resnext50",
        )
    ]


_REGISTRY: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        _efficientnet_specs() + _lite_specs() + _edgetpu_specs() + _condconv_specs()
        + _v2_specs() + _se_resnext_specs()
    )
}


def list_models() -> list[str]:
    """All model names, in registry order."""
    return list(_REGISTRY)


def get_spec(name: str) -> ModelSpec:
    """The `ModelSpec` of a model name; unknown names raise a `ValueError` with close matches."""
    key = name.strip().lower() if isinstance(name, str) else name
    if key not in _REGISTRY:
        close = difflib.get_close_matches(str(key), list(_REGISTRY), n=4, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ValueError(
            f"Unknown model name {name!r}.{hint} Known models: {', '.join(_REGISTRY)}."
        )
    return _REGISTRY[key]
