"""Image preprocessing as TensorFlow graph ops (docs/reference.md#preprocessing).

- Train: a random crop from `sample_distorted_bounding_box` (min object covered 0.1, aspect
  3/4..4/3, area 0.08..1, 10 attempts; the centre crop when no attempt succeeds), decoded together
  with the crop (`decode_and_crop_jpeg`), resized to the model resolution, randomly flipped.
- Eval: the centre crop of `size / (size + crop_padding) * min(h, w)`, resized.

Both return float32 pixels in [0, 255], not normalised: `normalize_images` uses the spec's mean/std.
JPEG bytes take the fast decode-and-crop path; PNG, GIF and BMP bytes are decoded whole, then cropped.
All randomness is stateless, driven by a `seed` tensor of shape [2], so a seeded pipeline is
reproducible whatever the parallelism.
"""

from __future__ import annotations

import os

import tensorflow as tf

RESIZE_METHODS = ("bicubic", "bicubic_tf1", "bilinear")

# Images announcing more pixels than this are refused before decoding, as tfrecord_tools refuses
# them (tfrecord_tools/images.py: Image.MAX_IMAGE_PIXELS); settable by environment variable.
MAX_PIXELS_ENV = "EFFICIENTNET_MAX_IMAGE_PIXELS"
MAX_IMAGE_PIXELS = int(os.environ.get(MAX_PIXELS_ENV) or 300_000_000)

# sample_distorted_bounding_box settings of the published EfficientNet training.
MIN_OBJECT_COVERED = 0.1
ASPECT_RATIO_RANGE = (3.0 / 4.0, 4.0 / 3.0)
AREA_RANGE = (0.08, 1.0)
MAX_ATTEMPTS = 10


def resize(image, image_size: int, resize_method: str = "bicubic"):
    """[H, W, 3] -> float32 [image_size, image_size, 3], clipped to [0, 255].

    'bicubic' is TF2 `tf.image.resize` (half-pixel centres); 'bicubic_tf1' is the exact TF1
    `ResizeBicubic(half_pixel_centers=False)` the published checkpoints were trained with.
    Bicubic overshoots at edges; the clip keeps pixels in range, as PIL does.
    """
    image = tf.cast(image, tf.float32)
    size = [image_size, image_size]
    if resize_method == "bicubic":
        image = tf.image.resize(image, size, method="bicubic")
    elif resize_method == "bicubic_tf1":
        image = tf.raw_ops.ResizeBicubic(images=image[None], size=size, align_corners=False,
                                         half_pixel_centers=False)[0]
    elif resize_method == "bilinear":
        image = tf.image.resize(image, size, method="bilinear")
    else:
        raise ValueError(f"resize_method {resize_method!r} is not one of "
                         f"{', '.join(RESIZE_METHODS)}")
    image = tf.clip_by_value(image, 0.0, 255.0)
    return tf.ensure_shape(image, [image_size, image_size, 3])


def _decode_any(image_bytes):
    """Any encoded image (JPEG, PNG, GIF first frame, BMP) -> uint8 [H, W, 3]."""
    image = tf.io.decode_image(image_bytes, channels=3, expand_animations=False)
    return tf.ensure_shape(image, [None, None, 3])


def _header_uint(image_bytes, offset: int, size: int, big_endian: bool):
    """The unsigned `size`-byte integer at `offset` of a string tensor (0 past its end)."""
    raw = tf.io.decode_raw(tf.strings.substr(image_bytes, offset, size), tf.uint8)
    raw = tf.cast(tf.pad(raw, [[0, size - tf.shape(raw)[0]]]), tf.int64)
    weights = [256 ** (size - 1 - i) if big_endian else 256 ** i for i in range(size)]
    return tf.reduce_sum(raw * tf.constant(weights, tf.int64))


def _other_header_pixels(image_bytes):
    """Height x width announced by a PNG, GIF or BMP header (int64; 0 for other formats, which
    the decoder refuses anyway)."""
    magic = tf.strings.substr(image_bytes, 0, 8)

    def png():  # IHDR: width, height as big-endian uint32 at bytes 16 and 20
        return _header_uint(image_bytes, 16, 4, True) * _header_uint(image_bytes, 20, 4, True)

    def gif():  # logical screen: width, height as little-endian uint16 at bytes 6 and 8
        return _header_uint(image_bytes, 6, 2, False) * _header_uint(image_bytes, 8, 2, False)

    def bmp():  # BITMAPINFOHEADER: int32 width, height at 18 and 22 (height < 0: top-down)
        width = _header_uint(image_bytes, 18, 4, False)
        height = _header_uint(image_bytes, 22, 4, False)
        height = tf.where(height >= 2**31, 2**32 - height, height)
        return width * height

    return tf.case([
        (tf.equal(magic, b"\x89PNG\r\n\x1a\n"), png),
        (tf.equal(tf.strings.substr(magic, 0, 4), b"GIF8"), gif),
        (tf.equal(tf.strings.substr(magic, 0, 2), b"BM"), bmp),
    ], default=lambda: tf.constant(0, tf.int64), exclusive=False)


def header_pixels(image_bytes):
    """Height x width of a JPEG, PNG, GIF or BMP read from its header (int64; 0 for other
    formats), without decoding the image."""
    def jpeg():
        shape = tf.cast(tf.image.extract_jpeg_shape(image_bytes), tf.int64)
        return shape[0] * shape[1]

    return tf.cond(tf.io.is_jpeg(image_bytes), jpeg, lambda: _other_header_pixels(image_bytes))


def _pixel_check(pixels, max_pixels: int | None):
    """[] or [the assertion that `pixels` is within `max_pixels`]."""
    if not max_pixels:
        return []
    return [tf.debugging.assert_less_equal(
        tf.cast(pixels, tf.int64), tf.constant(int(max_pixels), tf.int64),
        message=f"Image over the pixel limit: its header announces more than {int(max_pixels)} "
                "pixels; refused before decoding (raise the limit with --max_image_pixels or "
                f"{MAX_PIXELS_ENV} if the image is genuine)")]


def check_pixel_limit(image_bytes, max_pixels: int | None = MAX_IMAGE_PIXELS):
    """`image_bytes`, failing with InvalidArgumentError ("Image over the pixel limit ...") when
    its header announces more than `max_pixels` pixels: a small file can announce an image of
    many gigabytes (a decompression bomb), refused before any decoding. None: no limit."""
    if not max_pixels:
        return image_bytes
    with tf.control_dependencies(_pixel_check(header_pixels(image_bytes), max_pixels)):
        return tf.identity(image_bytes)


def _decode_and_crop(image_bytes, crop_window_fn, max_pixels: int | None = MAX_IMAGE_PIXELS):
    """(crop, original shape [h, w, c]): decodes only `crop_window_fn(shape) -> [y, x, h, w]`.
    Images whose header announces more than `max_pixels` pixels fail before decoding."""

    def jpeg():
        shape = tf.image.extract_jpeg_shape(image_bytes, output_type=tf.int32)
        window = crop_window_fn(shape)
        with tf.control_dependencies(_pixel_check(
                tf.cast(shape[0], tf.int64) * tf.cast(shape[1], tf.int64), max_pixels)):
            return tf.image.decode_and_crop_jpeg(image_bytes, window, channels=3), shape

    def other():
        with tf.control_dependencies(
                _pixel_check(_other_header_pixels(image_bytes), max_pixels)):
            image = _decode_any(image_bytes)
        shape = tf.shape(image, out_type=tf.int32)
        window = crop_window_fn(shape)
        crop = tf.slice(image, tf.stack([window[0], window[1], 0]),
                        tf.stack([window[2], window[3], 3]))
        return crop, shape

    image, shape = tf.cond(tf.io.is_jpeg(image_bytes), jpeg, other)
    return tf.ensure_shape(image, [None, None, 3]), shape


def center_crop_window(shape, image_size: int, crop_padding: int = 32):
    """[y, x, size, size] of the eval centre crop for an image of `shape` [h, w, ...]."""
    height, width = shape[0], shape[1]
    crop = tf.cast(
        (image_size / (image_size + crop_padding))
        * tf.cast(tf.minimum(height, width), tf.float32), tf.int32)
    crop = tf.maximum(crop, 1)
    offset_y = (height - crop + 1) // 2
    offset_x = (width - crop + 1) // 2
    return tf.stack([offset_y, offset_x, crop, crop])


def preprocess_for_eval(image_bytes, image_size: int, crop_padding: int = 32,
                        resize_method: str = "bicubic",
                        max_pixels: int | None = MAX_IMAGE_PIXELS):
    """Encoded image -> float32 [image_size, image_size, 3] in [0, 255] (not normalised).
    Images over `max_pixels` pixels fail before decoding (`check_pixel_limit`)."""
    image_bytes = tf.convert_to_tensor(image_bytes, tf.string)
    image, _ = _decode_and_crop(
        image_bytes, lambda shape: center_crop_window(shape, image_size, crop_padding),
        max_pixels)
    return resize(image, image_size, resize_method)


def _random_crop_window(shape, bbox, seed, area_range=AREA_RANGE):
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.cast(shape, tf.int32), bounding_boxes=bbox, seed=seed,
        min_object_covered=MIN_OBJECT_COVERED, aspect_ratio_range=ASPECT_RATIO_RANGE,
        area_range=area_range, max_attempts=MAX_ATTEMPTS, use_image_if_no_bounding_boxes=True)
    return tf.stack([begin[0], begin[1], size[0], size[1]])


def _as_seed(seed):
    if seed is None:
        return tf.random.uniform([2], maxval=2**31 - 1, dtype=tf.int32)
    seed = tf.convert_to_tensor(seed)
    if seed.shape.rank == 0:
        seed = tf.stack([seed, tf.zeros_like(seed)])
    return tf.cast(seed, tf.int32)


def preprocess_for_train(image_bytes, image_size: int, resize_method: str = "bicubic",
                         bbox=None, seed=None, crop_padding: int = 32,
                         area_range=AREA_RANGE):
    """Encoded image -> random crop, resize, random flip: float32 [S, S, 3] in [0, 255].

    `bbox`: float [1, N, 4] boxes (ymin, xmin, ymax, xmax in [0, 1]) the crop must cover 10% of;
    None for the whole image. `seed`: int or int tensor [2] (stateless); None draws one.
    When the sampler finds no crop it returns the whole image, and then, as in the reference
    code, the eval centre crop (`crop_padding`) is used instead.
    """
    image_bytes = tf.convert_to_tensor(image_bytes, tf.string)
    seed = _as_seed(seed)
    crop_seed = tf.random.experimental.stateless_fold_in(seed, 0)
    flip_seed = tf.random.experimental.stateless_fold_in(seed, 1)
    if bbox is None:
        bbox = tf.constant([[[0.0, 0.0, 1.0, 1.0]]], tf.float32)
    bbox = tf.reshape(tf.cast(bbox, tf.float32), [1, -1, 4])

    cropped, shape = _decode_and_crop(
        image_bytes, lambda shape: _random_crop_window(shape, bbox, crop_seed, area_range))
    cropped_shape = tf.shape(cropped, out_type=tf.int32)
    # The sampler gives back the whole image when all attempts fail: use the centre crop then.
    whole = tf.reduce_all(tf.equal(cropped_shape[:2], shape[:2]))
    image = tf.cond(
        whole,
        lambda: preprocess_for_eval(image_bytes, image_size, crop_padding, resize_method),
        lambda: resize(cropped, image_size, resize_method))
    image = tf.image.stateless_random_flip_left_right(image, flip_seed)
    return tf.ensure_shape(image, [image_size, image_size, 3])


def normalize_images(images, spec):
    """(images - spec.mean) / spec.std, per channel, in the images' float dtype."""
    images = tf.convert_to_tensor(images)
    if not images.dtype.is_floating:
        images = tf.cast(images, tf.float32)
    mean = tf.constant(spec.mean, tf.float32)
    std = tf.constant(spec.std, tf.float32)
    normalised = (tf.cast(images, tf.float32) - mean) / std
    return tf.cast(normalised, images.dtype)
