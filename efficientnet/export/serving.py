"""The inference SavedModel: normalisation (and for bytes, decode + eval crop + resize) inside.

Two signatures share one head:

- `serving_default(images)`: float32 pixels in [0, 255], NHWC, any batch.
- `serving_bytes(image_bytes)`: encoded JPEG/PNG strings, any batch. An image whose header
  announces more pixels than the data pipeline's limit (`MAX_IMAGE_PIXELS`, read when the model
  is exported) fails the call before it is decoded.

Both return `probabilities` [B, C], `top_5_classes` [B, min(5, C)] (int32) and, when class names
are given, `top_5_class_names` [B, min(5, C)]. The model always runs with `training=False`.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from efficientnet.data.preprocessing import preprocess_for_eval
from efficientnet.export.config import (
    BYTES_INPUT,
    BYTES_SIGNATURE,
    PIXELS_INPUT,
    PIXELS_SIGNATURE,
)
from efficientnet.models.specs import ModelSpec

# Pixels per group of `normalize_for_inference` (at most): 16 RGB pixels are 48 channels.
MAX_PIXEL_GROUP = 16


def normalize_for_inference(pixels, spec: ModelSpec):
    """`normalize_images` as one 1x1 depthwise convolution with a bias: x / std - mean / std.

    The same values up to float rounding (the export's parity check bounds the difference). In a
    full-integer TFLite model this is one op XNNPACK runs, where the elementwise subtraction and
    scaling by per-channel constants are left to TFLite's own kernels. Groups of g neighbouring
    pixels of a row are one position of 3 g channels (a reshape, no copy; g is the largest
    divisor of the width up to 16), with the per-channel constants repeated g times: 3 channels
    keep XNNPACK's vector kernels mostly idle. B0 int8 at 224 px on an AVX-512 host, raw invoke:
    1.80 ms with SUB and MUL, 1.70 with the 3-channel depthwise (an earlier A/B); in one later A/B
    3 channels 1.66, 48 channels 1.60, no normalisation at all 1.61.
    """
    pixels = tf.cast(pixels, tf.float32)
    height, width = pixels.shape[1], pixels.shape[2]
    group = 1
    if height is not None and width is not None:
        group = max(g for g in range(1, MAX_PIXEL_GROUP + 1) if width % g == 0)
    std = np.asarray(spec.std, np.float32)
    mean = np.asarray(spec.mean, np.float32)
    grouped = tf.reshape(pixels, [-1, height, width // group, 3 * group]) if group > 1 else pixels
    scale = tf.constant(np.tile(1.0 / std, group).reshape(1, 1, 3 * group, 1))
    scaled = tf.nn.depthwise_conv2d(grouped, scale, strides=[1, 1, 1, 1], padding="VALID")
    normalised = tf.nn.bias_add(scaled, tf.constant(np.tile(-mean / std, group)))
    return tf.reshape(normalised, [-1, height, width, 3]) if group > 1 else normalised


def build_serving_module(
    model: keras.Model,
    spec: ModelSpec,
    image_size: int,
    class_names: list[str] | None = None,
) -> tf.Module:
    """Wraps `model` (normalised images -> logits) into the two serving signatures."""
    num_classes = int(model.output_shape[-1])
    top_k = min(5, num_classes)
    names = tf.constant(class_names) if class_names else None

    def classify(pixels):
        logits = model(normalize_for_inference(pixels, spec), training=False)
        probabilities = tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)
        top_classes = tf.cast(tf.math.top_k(probabilities, k=top_k).indices, tf.int32)
        outputs = {"probabilities": probabilities, "top_5_classes": top_classes}
        if names is not None:
            outputs["top_5_class_names"] = tf.gather(names, top_classes)
        return outputs

    def decode(image_bytes):
        image = preprocess_for_eval(
            image_bytes, image_size, crop_padding=spec.crop_padding,
            resize_method=spec.interpolation,
        )
        return tf.ensure_shape(tf.cast(image, tf.float32), [image_size, image_size, 3])

    def serve_pixels(images):
        return classify(images)

    def serve_bytes(image_bytes):
        pixels = tf.map_fn(
            decode, image_bytes,
            fn_output_signature=tf.TensorSpec([image_size, image_size, 3], tf.float32),
        )
        return classify(pixels)

    module = tf.Module()
    # Track the model's tf.Variables directly: keras.export.ExportArchive also tracks the Keras
    # wrappers, which writes every weight twice (a SavedModel twice the model's size).
    module.model_variables = [getattr(v, "value", v) for v in model.variables]
    pixels_spec = tf.TensorSpec([None, image_size, image_size, 3], tf.float32, name=PIXELS_INPUT)
    bytes_spec = tf.TensorSpec([None], tf.string, name=BYTES_INPUT)
    module.serve_pixels = tf.function(serve_pixels, input_signature=[pixels_spec], autograph=False)
    module.serve_bytes = tf.function(serve_bytes, input_signature=[bytes_spec], autograph=False)
    return module


def save_saved_model(
    model: keras.Model,
    spec: ModelSpec,
    image_size: int,
    path: str,
    class_names: list[str] | None = None,
) -> None:
    """Writes the inference SavedModel with both signatures to `path`."""
    module = build_serving_module(model, spec, image_size, class_names)
    signatures = {PIXELS_SIGNATURE: module.serve_pixels, BYTES_SIGNATURE: module.serve_bytes}
    tf.saved_model.save(module, path, signatures=signatures)
