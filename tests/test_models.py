"""The model zoo: exact parameter counts, heads, forward passes, naming, backends."""

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from efficientnet import models
from efficientnet.models import build, decode_block_string, encode_block_args, get_spec

# Trainable parameters with 1000 classes (docs/reference.md#parameter-counts; the published
# tensorflow/tpu, automl and timm models).
EXPECTED_PARAMS = {
    "efficientnet-b0": 5_288_548,
    "efficientnet-b1": 7_794_184,
    "efficientnet-b2": 9_109_994,
    "efficientnet-b3": 12_233_232,
    "efficientnet-b4": 19_341_616,
    "efficientnet-b5": 30_389_784,
    "efficientnet-b6": 43_040_704,
    "efficientnet-b7": 66_347_960,
    "efficientnet-b8": 87_413_142,
    "efficientnet-l2": 480_309_308,
    "efficientnet-lite0": 4_652_008,
    "efficientnet-lite1": 5_416_680,
    "efficientnet-lite2": 6_092_072,
    "efficientnet-lite3": 8_197_096,
    "efficientnet-lite4": 13_006_568,
    "efficientnet-edgetpu-s": 5_438_392,
    "efficientnet-edgetpu-m": 6_899_496,
    "efficientnet-edgetpu-l": 10_589_712,
    "efficientnet-condconv-b0-4e": 13_314_116,
    "efficientnet-condconv-b0-8e": 24_013_284,
    "efficientnet-condconv-b0-8e-depth": 39_715_968,
    "efficientnetv2-b0": 7_139_704,
    "efficientnetv2-b1": 8_141_052,
    "efficientnetv2-b2": 10_096_086,
    "efficientnetv2-b3": 14_358_406,
    "efficientnetv2-s": 21_458_488,
    "efficientnetv2-m": 54_139_356,
    "efficientnetv2-l": 118_515_272,
    "efficientnetv2-xl": 208_119_808,
    "se-resnext50": 27_559_896,
}
EXPECTED_RESOLUTION = {  # (train, eval), docs/reference.md#parameter-counts
    "efficientnet-b0": (224, 224), "efficientnet-b3": (300, 300), "efficientnet-b7": (600, 600),
    "efficientnet-l2": (800, 800), "efficientnet-lite3": (280, 280),
    "efficientnet-edgetpu-l": (300, 300), "efficientnetv2-b3": (240, 300),
    "efficientnetv2-s": (300, 384), "efficientnetv2-xl": (384, 512), "se-resnext50": (224, 224),
}
SLOW = {"efficientnet-b7", "efficientnet-b8", "efficientnet-l2", "efficientnetv2-l",
        "efficientnetv2-xl"}


def trainable_params(model):
    return sum(int(np.prod(v.shape)) for v in model.trainable_weights)


def test_registry_lists_every_variant_of_the_reference_table():
    assert sorted(models.list_models()) == sorted(EXPECTED_PARAMS)


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in EXPECTED_PARAMS],
)
def test_trainable_parameter_count_matches_reference(name):
    keras.backend.clear_session()
    assert trainable_params(build(name, image_size=32)) == EXPECTED_PARAMS[name]


def test_b0_total_parameters_include_bn_statistics():
    model = build("efficientnet-b0", image_size=32)
    bn_statistics = sum(
        int(np.prod(v.shape)) for v in model.non_trainable_weights if "moving_" in v.path
    )
    assert bn_statistics == 42_016
    # keras.applications reports 5,330,571: the same plus its in-model Normalization layer
    # (mean 3 + variance 3 + count 1); here normalisation happens in the input pipeline.
    assert model.count_params() == 5_330_571 - 7


@pytest.mark.parametrize("name, resolution", EXPECTED_RESOLUTION.items())
def test_spec_resolutions(name, resolution):
    spec = get_spec(name)
    assert (spec.train_size, spec.eval_size) == resolution


def test_spec_preprocessing_metadata_per_family():
    b0, lite, v2, edge = (get_spec(n) for n in (
        "efficientnet-b0", "efficientnet-lite0", "efficientnetv2-s", "efficientnet-edgetpu-s"))
    np.testing.assert_allclose(b0.mean, (123.675, 116.28, 103.53))
    np.testing.assert_allclose(b0.std, (58.395, 57.12, 57.375))
    assert lite.mean == (127.0,) * 3 and lite.std == (128.0,) * 3
    assert edge.mean == (127.0,) * 3 and edge.std == (128.0,) * 3 and edge.activation == "relu"
    assert v2.mean == (128.0,) * 3 and v2.std == (128.0,) * 3
    assert (b0.bn_momentum, b0.bn_epsilon, v2.bn_momentum, v2.bn_epsilon) == (0.99, 1e-3, 0.9, 1e-3)
    assert b0.crop_padding == 32 and b0.interpolation == "bicubic" and b0.scope == "efficientnet-b0"
    assert [get_spec(f"efficientnet-b{i}").dropout_rate for i in range(8)] == [
        0.2, 0.2, 0.3, 0.3, 0.4, 0.4, 0.5, 0.5]


def test_unknown_name_lists_close_matches():
    with pytest.raises(ValueError, match=r"Unknown model name 'efficientnet-b9'.*efficientnet-b"):
        get_spec("efficientnet-b9")
    with pytest.raises(ValueError, match="efficientnetv2-s"):
        build("efficientnetv2_s")


def test_block_decoder_accepts_tf1_and_v2_strides():
    tf1 = decode_block_string("r1_k3_s11_e1_i32_o16_se0.25")
    v2 = decode_block_string("r1_k3_s1_e1_i32_o16_se0.25")
    assert tf1 == v2
    assert (tf1.num_repeat, tf1.kernel_size, tf1.strides, tf1.expand_ratio) == (1, 3, 1, 1)
    assert (tf1.input_filters, tf1.output_filters, tf1.se_ratio) == (32, 16, 0.25)
    fused = decode_block_string("r1_k3_s11_e4_i24_o24_c1_noskip")
    assert fused.conv_type == 1 and not fused.id_skip and fused.se_ratio is None
    assert decode_block_string("r3_k5_s11_e6_i80_o112_se0.25_cc").condconv
    for text in ("r2_k3_s22_e6_i16_o24_se0.25", "r1_k3_s11_e4_i24_o24_c1_noskip"):
        assert encode_block_args(decode_block_string(text)) == text
    with pytest.raises(ValueError, match="missing 'k'"):
        decode_block_string("r1_s11_e1_i32_o16")
    with pytest.raises(ValueError, match="square strides"):
        decode_block_string("r1_k3_s12_e1_i32_o16")


def test_scaling_rules():
    b4 = get_spec("efficientnet-b4")
    assert b4.round_filters(32) == 48 and b4.round_filters(1280) == 1792
    assert b4.round_repeats(3) == 6  # ceil(1.8 * 3)
    # V2 rounds without the "never below 90%" rule: 16 * 1.2 = 19.2 -> 16 (TF1 would give 24).
    assert get_spec("efficientnetv2-b3").round_filters(16) == 16
    assert get_spec("efficientnet-b3").round_filters(16) == 24


def test_head_sizes_1001_and_10_classes():
    base = build("efficientnet-b0", image_size=32)
    with_background = build("efficientnet-b0", image_size=32, num_classes=1001)
    assert trainable_params(with_background) - trainable_params(base) == 1281
    ten = build("efficientnet-b0", image_size=32, num_classes=10)
    shapes = {v.path: tuple(v.shape) for v in base.weights}
    ten_shapes = {v.path: tuple(v.shape) for v in ten.weights}
    changed = {path for path in shapes if shapes[path] != ten_shapes[path]}
    assert changed == {"head_dense/kernel", "head_dense/bias"}
    assert ten_shapes["head_dense/kernel"] == (1280, 10)


def test_include_top_false_returns_head_feature_map():
    features = build("efficientnet-b0", image_size=64, include_top=False)
    assert tuple(features.output.shape) == (None, 2, 2, 1280)


@pytest.mark.parametrize(
    "name",
    ["efficientnet-b0", "efficientnet-lite0", "efficientnet-edgetpu-s",
     "efficientnet-condconv-b0-4e", "efficientnetv2-b0", "se-resnext50"],
)
def test_forward_pass_at_native_resolution(name):
    keras.backend.clear_session()
    spec = get_spec(name)
    model = build(name)
    images = np.random.default_rng(0).normal(size=(2, spec.eval_size, spec.eval_size, 3))
    logits = np.asarray(model(images.astype("float32"), training=False))
    assert logits.shape == (2, 1000) and logits.dtype == np.float32
    assert np.isfinite(logits).all()
    assert not np.allclose(logits[0], logits[1])


def test_training_differs_from_inference_only_by_dropout_drop_connect_and_bn():
    images = np.random.default_rng(1).normal(size=(4, 64, 64, 3)).astype("float32")
    model = build("efficientnet-b0", image_size=64, num_classes=10, dropout_rate=0.0,
                  drop_connect_rate=0.0)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False  # frozen BN runs in inference mode
    np.testing.assert_allclose(model(images, training=True), model(images, training=False),
                               atol=1e-5)
    for layer in model.layers:  # BN in training mode normalises with the batch's statistics
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = True
    assert not np.allclose(model(images, training=True), model(images, training=False),
                           atol=1e-3)
    # Unfrozen BN uses batch statistics; dropout and drop-connect are random in training.
    stochastic = build("efficientnet-b0", image_size=64, num_classes=10, dropout_rate=0.5,
                       drop_connect_rate=0.5)
    for layer in stochastic.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
    a, b = stochastic(images, training=True), stochastic(images, training=True)
    assert not np.allclose(a, b)
    np.testing.assert_allclose(stochastic(images), stochastic(images))


def test_drop_connect_rate_grows_linearly_with_block_index():
    model = build("efficientnet-b0", image_size=32)
    rates = {layer.name: layer.rate for layer in model.layers if layer.name.endswith("_drop")}
    # 16 blocks; only blocks with an identity skip have drop-connect.
    assert rates == pytest.approx({f"blocks_{i}_drop": 0.2 * i / 16
                                   for i in (2, 4, 6, 7, 9, 10, 12, 13, 14)})
    # Stage-changing blocks (0: 32->16, 1: stride 2, 15: 192->320) have no skip, so no drop.
    assert not {"blocks_0_drop", "blocks_1_drop", "blocks_15_drop"} & set(rates)
    assert len(rates) == 9


def test_se_width_uses_block_input_filters():
    model = build("efficientnet-b0", image_size=32)
    # blocks_1: input 16, expanded 96 -> SE reduce to int(16 * 0.25) = 4, not 24.
    assert tuple(model.get_layer("blocks_1_se_reduce").kernel.shape) == (1, 1, 96, 4)
    assert tuple(model.get_layer("blocks_1_se_expand").kernel.shape) == (1, 1, 4, 96)


def test_bn_and_activation_settings():
    model = build("efficientnet-b0", image_size=32)
    bn = model.get_layer("blocks_3_expand_bn")
    assert (bn.momentum, bn.epsilon) == (0.99, 1e-3)
    for layer in ("stem_act", "blocks_3_expand_act", "blocks_3_dw_act", "head_act"):
        assert model.get_layer(layer).activation.__name__ == "silu", layer
    v2 = build("efficientnetv2-b0", image_size=32)
    assert (v2.get_layer("stem_bn").momentum, v2.get_layer("stem_bn").epsilon) == (0.9, 1e-3)
    edge = build("efficientnet-edgetpu-s", image_size=32)
    assert edge.get_layer("stem_act").activation.__name__ == "relu"
    lite = build("efficientnet-lite0", image_size=32)
    assert lite.get_layer("stem_act").activation.__name__ == "relu6"
    assert lite.get_layer("head_conv").filters == 1280  # Lite keeps the head fixed


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_keeps_float32_logits(policy):
    keras.mixed_precision.set_global_policy(policy)
    try:
        model = build("efficientnet-b0", image_size=32, num_classes=10)
        assert model.get_layer("blocks_3_expand_conv").compute_dtype == policy.split("_")[1]
        logits = model(np.zeros((2, 32, 32, 3), "float32"), training=True)
        assert keras.backend.standardize_dtype(logits.dtype) == "float32"
        assert np.isfinite(np.asarray(logits)).all()
    finally:
        keras.mixed_precision.set_global_policy("float32")


EXPECTED_TF1_NAMES = Path(__file__).parent / "data" / "efficientnet-b0_tf1_names.json"


def test_tf1_names_follow_reference_rules():
    model = build("efficientnet-b0", image_size=32)
    names = dict(models.tf1_variable_names(model))
    assert len(names) == len(model.weights)
    assert len(set(names.values())) == len(names)  # one-to-one
    scope = "efficientnet-b0"
    assert names["stem_conv/kernel"] == f"{scope}/stem/conv2d/kernel"
    assert names["stem_bn/moving_variance"] == f"{scope}/stem/tpu_batch_normalization/moving_variance"
    # blocks_0 has no expansion: the projection is conv2d and the BN after the depthwise comes first.
    assert names["blocks_0_dwconv/kernel"] == f"{scope}/blocks_0/depthwise_conv2d/depthwise_kernel"
    assert names["blocks_0_dw_bn/gamma"] == f"{scope}/blocks_0/tpu_batch_normalization/gamma"
    assert names["blocks_0_project_conv/kernel"] == f"{scope}/blocks_0/conv2d/kernel"
    assert names["blocks_0_project_bn/beta"] == f"{scope}/blocks_0/tpu_batch_normalization_1/beta"
    assert names["blocks_0_se_reduce/bias"] == f"{scope}/blocks_0/se/conv2d/bias"
    assert names["blocks_0_se_expand/kernel"] == f"{scope}/blocks_0/se/conv2d_1/kernel"
    # blocks_1 expands: conv2d (expand), conv2d_1 (project), BNs numbered 0, 1, 2.
    assert names["blocks_1_expand_conv/kernel"] == f"{scope}/blocks_1/conv2d/kernel"
    assert names["blocks_1_expand_bn/gamma"] == f"{scope}/blocks_1/tpu_batch_normalization/gamma"
    assert names["blocks_1_dw_bn/gamma"] == f"{scope}/blocks_1/tpu_batch_normalization_1/gamma"
    assert names["blocks_1_project_conv/kernel"] == f"{scope}/blocks_1/conv2d_1/kernel"
    assert names["blocks_1_project_bn/gamma"] == f"{scope}/blocks_1/tpu_batch_normalization_2/gamma"
    assert names["head_conv/kernel"] == f"{scope}/head/conv2d/kernel"
    assert names["head_bn/moving_mean"] == f"{scope}/head/tpu_batch_normalization/moving_mean"
    assert names["head_dense/kernel"] == f"{scope}/head/dense/kernel"
    assert names["head_dense/bias"] == f"{scope}/head/dense/bias"


def test_tf1_names_match_stored_list():
    pairs = models.tf1_variable_names(build("efficientnet-b0", image_size=32))
    if os.environ.get("REGENERATE_EXPECTED"):
        EXPECTED_TF1_NAMES.write_text(json.dumps(pairs, indent=0) + "\n")
    assert [list(p) for p in pairs] == json.loads(EXPECTED_TF1_NAMES.read_text())


def test_tf1_names_for_v2_fused_blocks():
    names = dict(models.tf1_variable_names(build("efficientnetv2-b0", image_size=32)))
    scope = "efficientnetv2-b0"
    # Fused block without expansion: one kxk conv (conv2d) and its BN.
    assert names["blocks_0_project_conv/kernel"] == f"{scope}/blocks_0/conv2d/kernel"
    assert names["blocks_0_project_bn/gamma"] == f"{scope}/blocks_0/tpu_batch_normalization/gamma"
    # Fused block with expansion: conv2d (3x3 fused expand) then conv2d_1 (1x1 project).
    assert names["blocks_1_fused_conv/kernel"] == f"{scope}/blocks_1/conv2d/kernel"
    assert names["blocks_1_project_conv/kernel"] == f"{scope}/blocks_1/conv2d_1/kernel"
    assert names["blocks_1_project_bn/gamma"] == f"{scope}/blocks_1/tpu_batch_normalization_1/gamma"


JAX_SCRIPT = """
import json, numpy as np, keras
from efficientnet.models import build
out = {"backend": keras.backend.backend()}
for name in ("efficientnet-b0", "efficientnetv2-s"):
    model = build(name, image_size=64)
    logits = np.asarray(model(np.ones((2, 64, 64, 3), "float32"), training=False))
    out[name] = [sum(int(np.prod(v.shape)) for v in model.trainable_weights),
                 list(logits.shape), bool(np.isfinite(logits).all())]
print("RESULT" + json.dumps(out))
"""


@pytest.mark.slow
def test_models_build_and_run_on_jax_backend():
    pytest.importorskip("jax")
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-c", JAX_SCRIPT], env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.split("RESULT", 1)[1])
    assert result["backend"] == "jax"
    assert result["efficientnet-b0"] == [EXPECTED_PARAMS["efficientnet-b0"], [2, 1000], True]
    assert result["efficientnetv2-s"] == [EXPECTED_PARAMS["efficientnetv2-s"], [2, 1000], True]


def test_models_package_uses_no_tensorflow():
    package = Path(models.__file__).parent
    for source in package.glob("*.py"):
        text = source.read_text()
        assert "import tensorflow" not in text and "tf." not in text, source
