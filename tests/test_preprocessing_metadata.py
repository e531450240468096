"""Each family's preprocessing metadata against the upstream code it comes from."""

from __future__ import annotations

import numpy as np
import pytest

from efficientnet.models import get_spec, list_models

V1_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
V1_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)


def _upstream(name: str) -> tuple:
    """(mean, std, interpolation, crop padding at the eval size), as the upstream code has it."""
    spec = get_spec(name)
    if spec.family in ("efficientnet", "se-resnext"):
        # tensorflow/tpu efficientnet/preprocessing.py (CROP_PADDING 32, bicubic) and
        # main.py MEAN_RGB / STDDEV_RGB; timm seresnext: IMAGENET_DEFAULT_MEAN/STD.
        return V1_MEAN, V1_STD, "bicubic", 32
    if spec.family in ("lite", "edgetpu", "condconv"):
        # tensorflow/tpu efficientnet/lite/efficientnet_lite_builder.py,
        # edgetpu/efficientnet_edgetpu_builder.py, condconv/efficientnet_condconv_builder.py:
        # MEAN_RGB = [127.0] * 3, STDDEV_RGB = [128.0] * 3.
        return (127.0,) * 3, (128.0,) * 3, "bicubic", 32
    if name.split("-")[-1].startswith("b"):
        # google/automl efficientnetv2/effnetv2_configs.py: augname 'effnetv1_autoaug' ->
        # preprocess_legacy.py (V1 mean/std, resize_bicubic, padding 32).
        return V1_MEAN, V1_STD, "bicubic", 32
    # google/automl efficientnetv2/preprocessing.py: (x - 128) / 128; preprocess_for_eval crops
    # with padding 32 only when image_size < 320, then tf.image.resize (bilinear).
    return (128.0,) * 3, (128.0,) * 3, "bilinear", 32 if spec.eval_size < 320 else 0


@pytest.mark.parametrize("name", list_models())
def test_preprocessing_metadata_matches_upstream(name):
    spec = get_spec(name)
    mean, std, interpolation, crop_padding = _upstream(name)
    np.testing.assert_allclose(spec.mean, mean, rtol=1e-9)
    np.testing.assert_allclose(spec.std, std, rtol=1e-9)
    assert (spec.interpolation, spec.crop_padding) == (interpolation, crop_padding)


def test_v2_values_spelled_out():
    for name in ("efficientnetv2-b0", "efficientnetv2-b3"):
        spec = get_spec(name)
        np.testing.assert_allclose(spec.mean, (123.675, 116.28, 103.53))
        np.testing.assert_allclose(spec.std, (58.395, 57.12, 57.375))
    for name, size in (("efficientnetv2-s", 384), ("efficientnetv2-m", 480),
                       ("efficientnetv2-l", 480), ("efficientnetv2-xl", 512)):
        spec = get_spec(name)
        assert spec.eval_size == size and spec.crop_padding == 0
        assert spec.mean == (128.0,) * 3 and spec.interpolation == "bilinear"


@pytest.mark.parametrize("ours,keras_name", [("efficientnetv2-b0", "EfficientNetV2B0"),
                                             ("efficientnetv2-s", "EfficientNetV2S")])
def test_normalisation_equals_keras_applications(ours, keras_name):
    """keras.applications' include_preprocessing layers against `normalize_images`."""
    import keras

    from efficientnet.data.preprocessing import normalize_images

    model = getattr(keras.applications, keras_name)(
        weights=None, include_top=False, input_shape=(32, 32, 3), include_preprocessing=True)
    first_conv = next(i for i, layer in enumerate(model.layers)
                      if isinstance(layer, keras.layers.Conv2D))
    preprocess = keras.Model(model.input, model.layers[first_conv - 1].output)
    assert not any(isinstance(layer, keras.layers.Conv2D) for layer in preprocess.layers)
    pixels = np.random.default_rng(0).uniform(0, 255, size=(2, 32, 32, 3)).astype("float32")
    expected = np.asarray(preprocess(pixels))
    np.testing.assert_allclose(np.asarray(normalize_images(pixels, get_spec(ours))), expected,
                               rtol=1e-5, atol=1e-5)
