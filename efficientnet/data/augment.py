"""AutoAugment (ImageNet policy v0), RandAugment, mixup and cutmix as TensorFlow graph ops.

The ops follow the tensorflow/tpu `autoaugment.py` policies (uint8 images in, uint8 out, fill value
128, magnitudes on a 0..10 scale), and their pixel values are those of the PIL functions the
policies were designed with: Color, Contrast, Brightness, Sharpness, Solarize, Posterize, Equalize
and AutoContrast equal PIL's ImageEnhance / ImageOps exactly (tested). That fixes two slips of the
reference: `Contrast` blends towards the mean grey level (it used the pixel count / 256), and the
shifts are integer arithmetic (no undefined 8-bit shifts). Translations are whole-pixel moves (pad
+ slice); rotations and shears are nearest-neighbour projective transforms. Every random choice is
stateless and derived from a `seed` tensor of shape [2], so an augmented pipeline is reproducible;
only the selected op runs (`_select`: a Case op that is not lowered to Switch/Merge, so the ops of
the branches not taken cost nothing; lowered, every one of their nodes is visited with a dead
tensor for every image, which more than doubled the cost of AutoAugment in tf.data)."""

from __future__ import annotations

import math

import tensorflow as tf

MAX_LEVEL = 10.0
FILL_VALUE = 128.0

# (name, probability, magnitude) pairs: the ImageNet AutoAugment policy "v0" (25 sub-policies).
POLICY_V0 = (
    (("Equalize", 0.8, 1), ("ShearY", 0.8, 4)),
    (("Color", 0.4, 9), ("Equalize", 0.6, 3)),
    (("Color", 0.4, 1), ("Rotate", 0.6, 8)),
    (("Solarize", 0.8, 3), ("Equalize", 0.4, 7)),
    (("Solarize", 0.4, 2), ("Solarize", 0.6, 2)),
    (("Color", 0.2, 0), ("Equalize", 0.8, 8)),
    (("Equalize", 0.4, 8), ("SolarizeAdd", 0.8, 3)),
    (("ShearX", 0.2, 9), ("Rotate", 0.6, 8)),
    (("Color", 0.6, 1), ("Equalize", 1.0, 2)),
    (("Invert", 0.4, 9), ("Rotate", 0.6, 0)),
    (("Equalize", 1.0, 9), ("ShearY", 0.6, 3)),
    (("Color", 0.4, 7), ("Equalize", 0.6, 0)),
    (("Posterize", 0.4, 6), ("AutoContrast", 0.4, 7)),
    (("Solarize", 0.6, 8), ("Color", 0.6, 9)),
    (("Solarize", 0.2, 4), ("Rotate", 0.8, 9)),
    (("Rotate", 1.0, 7), ("TranslateY", 0.8, 9)),
    (("ShearX", 0.0, 0), ("Solarize", 0.8, 4)),
    (("ShearY", 0.8, 0), ("Color", 0.6, 4)),
    (("Color", 1.0, 0), ("Rotate", 0.6, 2)),
    (("Equalize", 0.8, 4), ("Equalize", 0.0, 8)),
    (("Equalize", 1.0, 4), ("AutoContrast", 0.6, 2)),
    (("ShearY", 0.4, 7), ("SolarizeAdd", 0.6, 7)),
    (("Posterize", 0.8, 2), ("Solarize", 0.6, 10)),
    (("Solarize", 0.6, 8), ("Equalize", 0.6, 1)),
    (("Color", 0.8, 6), ("Rotate", 0.4, 5)),
)

RANDAUGMENT_OPS = (
    "AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize", "Color", "Contrast",
    "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateX", "TranslateY", "Cutout",
    "SolarizeAdd",
)

# (cutout half-size, translate pixels) at magnitude 10, as in the reference.
AUTOAUGMENT_CONSTS = {"cutout": 100, "translate": 250}
RANDAUGMENT_CONSTS = {"cutout": 40, "translate": 100}


try:  # not public API: kept behind one function, with the public op as the fallback
    from tensorflow.python.ops.cond_v2 import indexed_case as _indexed_case
except ImportError:  # pragma: no cover
    _indexed_case = None


def _select(index, branches: list):
    """branches[index]() (index: int32 scalar tensor), running only that branch."""
    if tf.executing_eagerly():
        return branches[int(index)]()
    if _indexed_case is None:  # pragma: no cover
        return tf.switch_case(index, branches)
    return _indexed_case(index, branches, lower_using_switch_merge=False)


def _fold(seed, salt: int):
    return tf.random.experimental.stateless_fold_in(seed, salt)


def _uniform(seed, minval=0.0, maxval=1.0):
    return tf.random.stateless_uniform([], seed, minval, maxval)


# ---- the image ops: uint8 [H, W, 3] -> uint8 [H, W, 3] ------------------------------------------
#
# Written for speed in tf.data on one core: elementwise arithmetic (cheap) instead of full-image
# `tf.where` (TensorFlow's Select kernel is ~10x slower than a multiply) or per-pixel gathers, and
# per-channel decisions taken on [3] vectors. Pixel values are those of PIL's ImageOps/ImageEnhance.

def blend(image1, image2, factor):
    """image1 + factor * (image2 - image1), clipped and truncated as PIL's Image.blend."""
    image1 = tf.cast(image1, tf.float32)
    image2 = tf.cast(image2, tf.float32)
    return tf.cast(tf.clip_by_value(image1 + factor * (image2 - image1), 0.0, 255.0), tf.uint8)


def invert(image):
    return 255 - image


def solarize(image, threshold):
    """Inverts the pixels at or above `threshold` (x XOR 255 is 255 - x)."""
    flip = tf.cast(tf.cast(image, tf.int32) >= threshold, tf.uint8) * 255
    return tf.bitwise.bitwise_xor(image, flip)


def solarize_add(image, addition, threshold=128):
    """Adds `addition` (clipped to [0, 255]) to the pixels below `threshold`."""
    pixels = tf.cast(image, tf.int32)
    added = tf.clip_by_value(pixels + addition, 0, 255)
    below = tf.cast(pixels < threshold, tf.int32)
    return tf.cast(pixels + below * (added - pixels), tf.uint8)


# PIL's luma weights (Image.convert("L"): (19595 R + 38470 G + 7471 B + 2**15) >> 16), as a
# matrix: pixels [N, 3] @ _LUMA gives the luma sum in all three channels at once. Every product and
# sum is an integer below 2**24, so float32 holds them exactly, whatever the summation order.
_LUMA = ((19595.0,) * 3, (38470.0,) * 3, (7471.0,) * 3)


def _luma(image, channels: int = 3):
    """float32 [H, W, channels] PIL luma (integer values) of a uint8 image."""
    pixels = tf.reshape(tf.cast(image, tf.float32), [-1, 3])
    weighted = tf.matmul(pixels, tf.constant(_LUMA, tf.float32)[:, :channels])
    return tf.reshape(tf.floor((weighted + 32768.0) / 65536.0), tf.concat(
        [tf.shape(image)[:2], [channels]], axis=0))


def grayscale(image):
    """uint8 [H, W, 1] luma with PIL's integer formula (ITU-R 601-2, as Image.convert("L"))."""
    return tf.cast(_luma(image, channels=1), tf.uint8)


def color(image, factor):
    return blend(_luma(image), image, factor)


def contrast(image, factor):
    """Blends with the mean grey level, rounded to an integer as PIL's ImageEnhance.Contrast."""
    mean = tf.floor(tf.reduce_mean(_luma(image, channels=1)) + 0.5)
    return blend(mean, image, factor)


def brightness(image, factor):
    return blend(0.0, image, factor)


def posterize(image, bits: int):
    """Keeps the `bits` high bits of every pixel."""
    bits = int(bits)
    if bits >= 8:
        return image
    return tf.bitwise.bitwise_and(image, tf.constant((0xFF << (8 - bits)) & 0xFF, tf.uint8))


def autocontrast(image):
    """Stretches each channel to [0, 255] (channels with one value are kept), as PIL does:
    int(p * scale + offset) in float64, with scale = 255 / (high - low), offset = -low * scale."""
    pixels = tf.reshape(tf.cast(image, tf.float64), [-1, 3])
    low = tf.reduce_min(pixels, axis=0)
    high = tf.reduce_max(pixels, axis=0)
    spread = high > low
    scale = tf.where(spread, 255.0 / tf.maximum(high - low, 1.0), 1.0)
    offset = tf.where(spread, -low * scale, 0.0)
    # The matmul multiplies each pixel by its channel's scale (the other products are exact
    # zeros) and bias_add adds the offset: per-channel arithmetic without slow broadcasting.
    stretched = tf.nn.bias_add(tf.matmul(pixels, tf.linalg.diag(scale)), offset)
    stretched = tf.clip_by_value(tf.cast(stretched, tf.int32), 0, 255)
    return tf.reshape(tf.cast(stretched, tf.uint8), tf.shape(image))


def sharpness(image, factor):
    """Blends with PIL's SMOOTH filter (3x3 kernel 1 1 1 / 1 5 1 / 1 1 1, rounded; border kept)."""
    pixels = tf.cast(image, tf.int32)
    rows = pixels[:-2] + pixels[1:-1] + pixels[2:]  # vertical sums of three
    total = rows[:, :-2] + rows[:, 1:-1] + rows[:, 2:] + 4 * pixels[1:-1, 1:-1]
    smooth = tf.cast((total + 6) // 13, tf.uint8)
    middle = tf.concat([image[1:-1, :1], smooth, image[1:-1, -1:]], axis=1)
    degenerate = tf.concat([image[:1], middle, image[-1:]], axis=0)
    return blend(degenerate, image, factor)


def equalize(image):
    """Per-channel histogram equalisation (PIL ImageOps.equalize), one pass over the pixels."""
    flat = tf.reshape(tf.cast(image, tf.int32), [-1])
    # Value v of channel c counts in bin 256 c + v of one histogram (bin width exactly 1); the
    # channel comes from the flat position (a broadcast [3] offset is several times slower).
    indices = flat + (tf.range(tf.size(flat)) % 3) * 256
    histogram = tf.reshape(tf.histogram_fixed_width(indices, [0, 768], nbins=768), [3, 256])
    highest = 255 - tf.argmax(tf.cast(histogram[:, ::-1] > 0, tf.int32), axis=1,
                              output_type=tf.int32)
    last = tf.gather(histogram, highest, batch_dims=1)  # count of each channel's top value
    step = (tf.reduce_sum(histogram, axis=1) - last) // 255
    safe_step = tf.maximum(step, 1)[:, None]
    lut = (tf.cumsum(histogram, axis=1) + safe_step // 2) // safe_step
    lut = tf.clip_by_value(tf.concat([tf.zeros_like(lut[:, :1]), lut[:, :-1]], axis=1), 0, 255)
    lut = tf.where(step[:, None] > 0, lut, tf.range(256)[None])  # a one-value channel is kept
    equalised = tf.gather(tf.cast(tf.reshape(lut, [768]), tf.uint8), indices)
    return tf.reshape(equalised, tf.shape(image))


def _round_half_away(x):
    """std::round: to the nearest integer, halves away from zero (tf.round rounds them to even)."""
    whole = tf.sign(x) * tf.floor(tf.abs(x))
    rest = x - whole  # exact
    return whole + tf.cast(rest >= 0.5, tf.float32) - tf.cast(rest <= -0.5, tf.float32)


def transform(image, matrix):
    """Projective transform (8 numbers, output -> input coordinates), nearest, fill 128.

    Pixel for pixel what `ImageProjectiveTransformV3` (NEAREST, CONSTANT) gives, at a third of its
    cost in tf.data: the same float32 arithmetic on the [H, W] grid, then one gather of whole
    pixels from the image with a fill pixel in front (tested against the kernel).
    """
    m = [tf.cast(value, tf.float32) for value in matrix]
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    ys = tf.cast(tf.range(height), tf.float32)[:, None]
    xs = tf.cast(tf.range(width), tf.float32)[None, :]
    projection = m[6] * xs + m[7] * ys + 1.0
    in_x = _round_half_away((m[0] * xs + m[1] * ys + m[2]) / projection)
    in_y = _round_half_away((m[3] * xs + m[4] * ys + m[5]) / projection)
    inside = tf.cast((in_x >= 0.0) & (in_x < tf.cast(width, tf.float32))
                     & (in_y >= 0.0) & (in_y < tf.cast(height, tf.float32)), tf.int32)
    index = (tf.cast(in_y, tf.int32) * width + tf.cast(in_x, tf.int32) + 1) * inside
    fill = tf.fill([1, 3], tf.constant(int(FILL_VALUE), image.dtype))
    return tf.gather(tf.concat([fill, tf.reshape(image, [-1, 3])], axis=0), index)


def rotate(image, degrees):
    """Rotates about the centre (counter-clockwise for positive degrees)."""
    radians = degrees * (math.pi / 180.0)
    height = tf.cast(tf.shape(image)[0], tf.float32) - 1.0
    width = tf.cast(tf.shape(image)[1], tf.float32) - 1.0
    cos, sin = tf.cos(radians), tf.sin(radians)
    x_offset = (width - (cos * width - sin * height)) / 2.0
    y_offset = (height - (sin * width + cos * height)) / 2.0
    return transform(image, [cos, -sin, x_offset, sin, cos, y_offset, 0.0, 0.0])


def _shift(image, dy, dx):
    """Moves the content down `dy` and right `dx` whole pixels, filling with 128 (pad + slice)."""
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    dy = tf.clip_by_value(dy, -height, height)
    dx = tf.clip_by_value(dx, -width, width)
    padded = tf.pad(image, [[tf.maximum(dy, 0), tf.maximum(-dy, 0)],
                            [tf.maximum(dx, 0), tf.maximum(-dx, 0)], [0, 0]],
                    constant_values=int(FILL_VALUE))
    return tf.slice(padded, tf.stack([tf.maximum(-dy, 0), tf.maximum(-dx, 0), 0]),
                    tf.stack([height, width, 3]))


def _whole(pixels):
    return tf.cast(tf.round(pixels), tf.int32)


def translate_x(image, pixels):
    """Moves the content right by `pixels` (rounded to whole pixels), filling with 128."""
    return _shift(image, 0, _whole(pixels))


def translate_y(image, pixels):
    """Moves the content down by `pixels` (rounded to whole pixels), filling with 128."""
    return _shift(image, _whole(pixels), 0)


def shear_x(image, level):
    return transform(image, [1.0, level, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0])


def shear_y(image, level):
    return transform(image, [1.0, 0.0, 0.0, level, 1.0, 0.0, 0.0, 0.0])


def cutout(image, pad_size, seed):
    """Fills a square of side 2 * pad_size (clipped at the borders) at a random centre with 128."""
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    center_y = tf.random.stateless_uniform([], _fold(seed, 0), 0, height, dtype=tf.int32)
    center_x = tf.random.stateless_uniform([], _fold(seed, 1), 0, width, dtype=tf.int32)
    top = tf.maximum(center_y - pad_size, 0)
    bottom = tf.minimum(center_y + pad_size, height)
    left = tf.maximum(center_x - pad_size, 0)
    right = tf.minimum(center_x + pad_size, width)
    box = tf.fill(tf.stack([bottom - top, right - left, 3]), tf.constant(int(FILL_VALUE), tf.uint8))
    band = tf.concat([image[top:bottom, :left], box, image[top:bottom, right:]], axis=1)
    return tf.concat([image[:top], band, image[bottom:]], axis=0)  # copies only, no select


# ---- magnitudes: level in 0..10 -> op argument ---------------------------------------------------

def _random_sign(value, seed):
    return tf.where(_uniform(seed) < 0.5, -value, value)


def apply_op(name: str, image, level: float, seed, consts: dict):
    """Applies op `name` at magnitude `level` (0..10 scale) to a uint8 image."""
    level = float(level)
    sign_seed = _fold(seed, 99)
    enhance = level / MAX_LEVEL * 1.8 + 0.1
    if name == "AutoContrast":
        return autocontrast(image)
    if name == "Equalize":
        return equalize(image)
    if name == "Invert":
        return invert(image)
    if name == "Rotate":
        return rotate(image, _random_sign(level / MAX_LEVEL * 30.0, sign_seed))
    if name == "Posterize":
        return posterize(image, int(level / MAX_LEVEL * 4))
    if name == "Solarize":
        return solarize(image, int(level / MAX_LEVEL * 256))
    if name == "SolarizeAdd":
        return solarize_add(image, int(level / MAX_LEVEL * 110))
    if name == "Color":
        return color(image, enhance)
    if name == "Contrast":
        return contrast(image, enhance)
    if name == "Brightness":
        return brightness(image, enhance)
    if name == "Sharpness":
        return sharpness(image, enhance)
    if name == "ShearX":
        return shear_x(image, _random_sign(level / MAX_LEVEL * 0.3, sign_seed))
    if name == "ShearY":
        return shear_y(image, _random_sign(level / MAX_LEVEL * 0.3, sign_seed))
    if name == "TranslateX":
        return translate_x(image, _random_sign(level / MAX_LEVEL * consts["translate"], sign_seed))
    if name == "TranslateY":
        return translate_y(image, _random_sign(level / MAX_LEVEL * consts["translate"], sign_seed))
    if name == "Cutout":
        return cutout(image, int(level / MAX_LEVEL * consts["cutout"]), seed)
    raise ValueError(f"Unknown augmentation op {name!r}")


OP_NAMES = tuple(sorted(set(RANDAUGMENT_OPS) | {op[0] for sub in POLICY_V0 for op in sub}))


def _checked(image, reference):
    return tf.ensure_shape(tf.reshape(image, tf.shape(reference)), reference.shape)


def autoaugment(image, seed, policy=POLICY_V0):
    """One random sub-policy of `policy`; each of its ops applied with its probability."""
    seed = tf.cast(seed, tf.int32)
    index = tf.random.stateless_uniform([], _fold(seed, 0), 0, len(policy), dtype=tf.int32)

    def sub_policy(ops):
        def run():
            result = image
            for position, (name, probability, level) in enumerate(ops):
                op_seed = _fold(seed, 10 + position)
                apply = _uniform(_fold(op_seed, 1)) < probability
                result = _select(tf.cast(apply, tf.int32), [
                    lambda r=result: r,
                    lambda r=result, n=name, lv=level, s=op_seed: apply_op(
                        n, r, lv, s, AUTOAUGMENT_CONSTS)])
            return result
        return run

    result = _select(index, [sub_policy(ops) for ops in policy])
    return _checked(result, image)


def randaugment(image, seed, num_layers: int = 2, magnitude: float = 10):
    """`num_layers` ops drawn uniformly from RANDAUGMENT_OPS, each at `magnitude`."""
    seed = tf.cast(seed, tf.int32)
    for layer in range(num_layers):
        layer_seed = _fold(seed, layer)
        index = tf.random.stateless_uniform([], _fold(layer_seed, 0), 0, len(RANDAUGMENT_OPS),
                                            dtype=tf.int32)
        op_seed = _fold(layer_seed, 1)
        branches = [
            (lambda n=name, current=image, s=op_seed: apply_op(n, current, magnitude, s,
                                                    RANDAUGMENT_CONSTS))
            for name in RANDAUGMENT_OPS
        ]
        image = _checked(_select(index, branches), image)
    return image


def get_augment_fn(name: str, num_layers: int = 2, magnitude: float = 10):
    """fn(uint8 image, seed [2]) -> uint8 image for 'autoaugment' or 'randaugment'."""
    if name == "autoaugment":
        return autoaugment
    if name == "randaugment":
        return lambda image, seed: randaugment(image, seed, num_layers, magnitude)
    raise ValueError(f"Unknown augment_name {name!r}: use 'autoaugment' or 'randaugment'")


# ---- batch mixing -------------------------------------------------------------------------------

def _beta(seed, alpha: float):
    first = tf.random.stateless_gamma([], _fold(seed, 0), alpha)
    second = tf.random.stateless_gamma([], _fold(seed, 1), alpha)
    return first / tf.maximum(first + second, 1e-12)


def mixup(images, labels, seed, alpha: float):
    """Blends the batch with itself reversed: lam ~ Beta(alpha, alpha), labels likewise."""
    lam = _beta(seed, alpha)
    mixed = lam * tf.cast(images, tf.float32) + (1 - lam) * tf.cast(images[::-1], tf.float32)
    return tf.cast(mixed, images.dtype), lam * labels + (1 - lam) * labels[::-1]


def cutmix(images, labels, seed, alpha: float):
    """Pastes a box of the reversed batch (area 1 - lam); labels weighted by the pasted area."""
    lam = _beta(seed, alpha)
    height, width = tf.shape(images)[1], tf.shape(images)[2]
    ratio = tf.sqrt(1.0 - lam)
    cut_h = tf.cast(ratio * tf.cast(height, tf.float32), tf.int32)
    cut_w = tf.cast(ratio * tf.cast(width, tf.float32), tf.int32)
    center_y = tf.random.stateless_uniform([], _fold(seed, 2), 0, height, dtype=tf.int32)
    center_x = tf.random.stateless_uniform([], _fold(seed, 3), 0, width, dtype=tf.int32)
    top = tf.clip_by_value(center_y - cut_h // 2, 0, height)
    bottom = tf.clip_by_value(center_y + cut_h // 2, 0, height)
    left = tf.clip_by_value(center_x - cut_w // 2, 0, width)
    right = tf.clip_by_value(center_x + cut_w // 2, 0, width)
    rows = tf.range(height)[:, None]
    cols = tf.range(width)[None, :]
    box = (rows >= top) & (rows < bottom) & (cols >= left) & (cols < right)
    mixed = tf.where(box[None, :, :, None], images[::-1], images)
    pasted = tf.cast((bottom - top) * (right - left), tf.float32)
    kept = 1.0 - pasted / tf.cast(height * width, tf.float32)
    return mixed, kept * labels + (1 - kept) * labels[::-1]


def mix_batch(images, labels, seed, mixup_alpha: float = 0.0, cutmix_alpha: float = 0.0):
    """mixup, cutmix, or (both alphas > 0) one of the two at random per batch."""
    seed = tf.cast(seed, tf.int32)
    if mixup_alpha > 0 and cutmix_alpha > 0:
        use_cutmix = _uniform(_fold(seed, 7)) < 0.5
        return tf.cond(use_cutmix,
                       lambda: cutmix(images, labels, seed, cutmix_alpha),
                       lambda: mixup(images, labels, seed, mixup_alpha))
    if mixup_alpha > 0:
        return mixup(images, labels, seed, mixup_alpha)
    if cutmix_alpha > 0:
        return cutmix(images, labels, seed, cutmix_alpha)
    return images, labels
