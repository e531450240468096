"""AutoAugment (ImageNet policy v0), RandAugment, mixup and cutmix as TensorFlow graph ops.

The ops follow the tensorflow/tpu `autoaugment.py` policies (uint8 images in, uint8 out, fill value
128, magnitudes on a 0..10 scale), and their pixel values are those of the PIL functions the
policies were designed with: Color, Contrast, Brightness, Sharpness, Solarize, Posterize, Equalize
and AutoContrast equal PIL's ImageEnhance / ImageOps exactly (tested). That fixes two slips of the
reference: `Contrast` blends towards the mean grey level (it used the pixel count / 256), and the
shifts are integer arithmetic (no undefined 8-bit shifts). Translations are whole-pixel moves (an
exact transform); rotations and shears are nearest-neighbour projective transforms. Every random choice is
stateless and derived from a `seed` tensor of shape [2], so an augmented pipeline is reproducible;
only the selected op runs (`_select`: a Case op that is not lowered to Switch/Merge, so the ops of
the branches not taken cost nothing; lowered, every one of their nodes is visited with a dead
tensor for every image, which more than doubled the cost of AutoAugment in tf.data).

The input pipeline augments whole batches with `augment_batch` inside one XLA-compiled function
(as `get_batch_augment_fn` builds it; compiled once, ~10-20 s on 2 cores) that runs each image's
policy in a loop. XLA's fused loops
make the ops several times cheaper than TensorFlow's per-image kernels. Three things keep its pixels
equal to the eager functions (tested): every random draw comes from full-range integers (XLA's
float and ranged stateless draws differ from TensorFlow's), products are rounded on their own
(`_product`: XLA would fuse multiply-adds into FMAs), and table lookups at a random index use
`tf.gather` (a slice at a runtime index made XLA compile again for every image)."""

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


# Every draw is made from full-range integers (StatelessRandomUniformFullIntV2, Philox): those
# are the same under XLA and in TensorFlow's kernels, while stateless float and ranged draws are
# not, and the compiled pipeline must pick the same ops as the functions called one image at a time.
_RNG = "philox"


def _fold(seed, salt: int):
    return tf.random.experimental.stateless_fold_in(seed, salt, alg=_RNG)


def _bits24(seed):
    """24 random bits, as an int32 in [0, 2**24)."""
    bits = tf.random.stateless_uniform([], seed, dtype=tf.int32, minval=None, maxval=None,
                                       alg=_RNG)
    return tf.bitwise.bitwise_and(tf.bitwise.right_shift(bits, 8), 0xFFFFFF)


def _randint(seed, maxval):
    """A stateless int32 in [0, maxval) (maxval < 2**31)."""
    scaled = tf.cast(_bits24(seed), tf.int64) * tf.cast(maxval, tf.int64)
    return tf.cast(tf.bitwise.right_shift(scaled, 24), tf.int32)


def _uniform(seed):
    """A stateless float32 in [0, 1) with 24 random bits."""
    return tf.cast(_bits24(seed), tf.float32) * (1.0 / 2**24)


# ---- the image ops: uint8 [H, W, 3] -> uint8 [H, W, 3] ------------------------------------------
#
# Written for speed on one core: elementwise arithmetic, per-channel decisions taken on [3]
# vectors. The pipeline runs them compiled by XLA, where the full-image selects of `_product` fuse
# into the arithmetic (called eagerly, TensorFlow's Select kernel makes them the costly part).
# Pixel values are those of PIL's ImageOps/ImageEnhance.

def _product(a, b):
    """a * b, rounded on its own (for the small values of these ops: below 3e38).

    XLA fuses a multiply and the add after it into one FMA (a single rounding) where PIL and
    TensorFlow's kernels round twice, which moves pixels that sit on a rounding boundary. A test
    that never holds here, but that XLA cannot rule out, keeps the product a value of its own.
    (Float64 casts do not: XLA narrows them back; nor does a NaN test: XLA drops it when it can
    tell the operands are finite, e.g. for a constant factor times converted pixels.)
    """
    product = a * b
    return tf.where(product > 3e38, tf.zeros_like(product), product)


def blend(image1, image2, factor):
    """image1 + factor * (image2 - image1), clipped and truncated as PIL's Image.blend."""
    image1 = tf.cast(image1, tf.float32)
    image2 = tf.cast(image2, tf.float32)
    mixed = image1 + _product(factor, image2 - image1)
    return tf.cast(tf.clip_by_value(mixed, 0.0, 255.0), tf.uint8)


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
    # The sum in integers: a float32 sum of 224 x 224 lumas is not exact, and its rounding
    # depends on the summation order (which XLA and TensorFlow's kernels choose differently).
    total = tf.reduce_sum(tf.cast(_luma(image, channels=1), tf.int32))
    count = tf.cast(tf.shape(image)[0] * tf.shape(image)[1], tf.float64)
    mean = tf.cast(tf.floor(tf.cast(total, tf.float64) / count + 0.5), tf.float32)
    return blend(mean, image, factor)


def brightness(image, factor):
    return blend(0.0, image, factor)


def posterize(image, bits):
    """Keeps the `bits` high bits of every pixel (`bits` may be a tensor)."""
    if isinstance(bits, int) and bits >= 8:
        return image
    shift = 8 - tf.clip_by_value(tf.cast(bits, tf.int32), 0, 8)
    mask = tf.bitwise.bitwise_and(tf.bitwise.left_shift(255, shift), 255)
    return tf.bitwise.bitwise_and(image, tf.cast(mask, tf.uint8))


def _rows(image):
    """[H, W, 3] -> [H, W * 3]: with the channels as the innermost axis, XLA's CPU loops run 3
    long and are not vectorised; on rows of W * 3 values they are (Sharpness 4x faster at 224 px)."""
    shape = tf.shape(image)
    return tf.reshape(image, [shape[0], shape[1] * 3])


def autocontrast(image):
    """Stretches each channel to [0, 255] (channels with one value are kept), as PIL does:
    int(p * scale + offset) in float64, with scale = 255 / (high - low), offset = -low * scale.

    The arithmetic runs on a [3, 256] table (PIL's own approach), then one lookup per pixel.
    """
    # Per-channel extremes in two steps, the first over `_rows` (a reduction over [N, 3] runs 3
    # wide and cost as much as the rest of the op).
    rows = _rows(image)
    low = tf.reduce_min(tf.reshape(tf.reduce_min(rows, axis=0), [-1, 3]), axis=0)
    high = tf.reduce_max(tf.reshape(tf.reduce_max(rows, axis=0), [-1, 3]), axis=0)
    low, high = tf.cast(low, tf.float64), tf.cast(high, tf.float64)
    spread = high > low
    scale = tf.where(spread, 255.0 / tf.maximum(high - low, 1.0), 1.0)
    offset = tf.where(spread, -low * scale, 0.0)
    values = tf.cast(tf.range(256), tf.float64)[None, :]
    table = _product(values, scale[:, None]) + offset[:, None]
    table = tf.clip_by_value(tf.cast(table, tf.int32), 0, 255)
    return _lookup(image, table)


def sharpness(image, factor):
    """Blends with PIL's SMOOTH filter (3x3 kernel 1 1 1 / 1 5 1 / 1 1 1, rounded; border kept)."""
    pixels = tf.cast(_rows(image), tf.int32)  # horizontal neighbours are 3 apart
    rows = pixels[:-2] + pixels[1:-1] + pixels[2:]  # vertical sums of three
    total = rows[:, :-6] + rows[:, 3:-3] + rows[:, 6:] + 4 * pixels[1:-1, 3:-3]
    # (total + 6) // 13 as a multiply and a shift, exact for every value here (total + 6 is at
    # most 3321; checked for all of them): integer division costs more than the filter.
    smooth = tf.bitwise.right_shift((total + 6) * 2521, 15)
    middle = tf.concat([pixels[1:-1, :3], smooth, pixels[1:-1, -3:]], axis=1)
    degenerate = tf.reshape(tf.concat([pixels[:1], middle, pixels[-1:]], axis=0),
                            tf.shape(image))
    return blend(degenerate, image, factor)


def _unfused(x):
    """x, computed once under XLA: a product with the 8 x 8 identity matrix.

    XLA fuses cheap arithmetic into every op that reads it and redoes it there: for each pixel of
    a lookup (Equalize: 1.24 ms per 224 px image with its table recomputed per pixel, 0.36 ms
    with it materialised), and in a gather it makes the gather itself several times slower
    (Rotate: 0.21 ms per image with its fused source indices, 0.10 ms with them materialised). A
    dot is not fused into its consumers. Exact for integers below 2**24 in magnitude and for
    finite normal float32 values (x * 1 + 0 * ...; subnormals may be flushed to zero); `x` is
    cast to float32 and back. A narrow identity keeps the dot cheap: 8 products per value. `x`
    as it is when its size is not static.
    """
    size = x.shape.num_elements()
    if size is None:
        return x
    flat = tf.pad(tf.reshape(tf.cast(x, tf.float32), [-1]), [[0, -size % 8]])
    product = tf.reshape(tf.matmul(tf.reshape(flat, [-1, 8]), tf.eye(8)), [-1])
    return tf.reshape(tf.cast(product[:size], x.dtype), x.shape)


def equalize(image):
    """Per-channel histogram equalisation (PIL ImageOps.equalize), one pass over the pixels."""
    flat = tf.reshape(tf.cast(image, tf.int32), [-1])
    # Value v of channel c counts in bin 256 c + v of one histogram (bin width exactly 1); the
    # channel comes from the flat position (a broadcast [3] offset is several times slower).
    indices = flat + (tf.range(tf.size(flat)) % 3) * 256
    histogram = tf.reshape(tf.math.unsorted_segment_sum(tf.ones_like(indices), indices, 768),
                           [3, 256])
    highest = 255 - tf.argmax(tf.cast(histogram[:, ::-1] > 0, tf.int32), axis=1,
                              output_type=tf.int32)
    last = tf.gather(histogram, highest, batch_dims=1)  # count of each channel's top value
    step = (tf.reduce_sum(histogram, axis=1) - last) // 255
    safe_step = tf.maximum(step, 1)[:, None]
    lut = (tf.cumsum(histogram, axis=1) + safe_step // 2) // safe_step
    lut = tf.clip_by_value(tf.concat([tf.zeros_like(lut[:, :1]), lut[:, :-1]], axis=1), 0, 255)
    lut = tf.where(step[:, None] > 0, lut, tf.range(256)[None])  # a one-value channel is kept
    return _lookup(image, lut, indices)


def _lookup(image, table, indices=None):
    """table[c][image[..., c]] for an int32 [3, 256] table of values 0..255 (`indices`: the flat
    pixel values plus 256 c, when the caller has them)."""
    if indices is None:  # `_rows`, each value plus 256 times its channel
        rows = tf.cast(_rows(image), tf.int32)
        indices = rows + ((tf.range(tf.shape(rows)[1]) % 3) * 256)[None, :]
    looked_up = tf.gather(tf.cast(_unfused(tf.reshape(table, [768])), tf.uint8), indices)
    return tf.reshape(looked_up, tf.shape(image))


# Coordinates beyond this are outside any image; clipping to it keeps the int32 casts defined.
_FAR = 2.0**22


def _round_half_away(x):
    """std::round to int32 (nearest, halves away from zero; tf.round rounds them to even)."""
    x = tf.clip_by_value(x, -_FAR, _FAR)
    whole = tf.cast(x, tf.int32)  # truncates towards zero
    rest = x - tf.cast(whole, tf.float32)  # exact
    return whole + tf.cast(rest >= 0.5, tf.int32) - tf.cast(rest <= -0.5, tf.int32)


def _gather_pixels(image, in_y, in_x, unfused_index: bool = False):
    """image[in_y, in_x] for int32 [H, W] source coordinates, 128 where they fall outside
    (`unfused_index`: the flat indices are computed once, see `_unfused`, when the image has a
    static size below 2**24 pixels; worth it for `transform`'s indices from float arithmetic,
    not for a translation's integer ones, which fuse cheaply: TranslateX 0.03 ms net per 224 px
    image fused, 0.11 unfused)."""
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    inside = (in_x >= 0) & (in_x < width) & (in_y >= 0) & (in_y < height)
    index = tf.where(inside, in_y * width + in_x + 1, 0)
    pixels = image.shape[:2].num_elements()
    if unfused_index and pixels is not None and pixels < 2**24:
        index = _unfused(index)
    fill = tf.fill([1, 3], tf.constant(int(FILL_VALUE), image.dtype))
    return tf.gather(tf.concat([fill, tf.reshape(image, [-1, 3])], axis=0), index)


def _is_zero(value) -> bool:
    return isinstance(value, (int, float)) and value == 0


def transform(image, matrix):
    """Projective transform (8 numbers, output -> input coordinates), nearest, fill 128.

    Pixel for pixel what `ImageProjectiveTransformV3` (NEAREST, CONSTANT) gives, at a fraction of
    its cost in tf.data: the same float32 arithmetic on the [H, W] grid, source coordinates rounded
    to integers, then one gather of whole pixels from the image with a fill pixel in front (tested
    against the kernel). When the last two numbers are the Python number 0 (every op here), the
    kernel's division by a projection of exactly 1.0 is left out, which changes no value. (For
    matrices whose products with the pixel coordinates are finite, as `_product` assumes.)
    """
    m = [tf.cast(value, tf.float32) for value in matrix]
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    projective = not (_is_zero(matrix[6]) and _is_zero(matrix[7]))
    # The products of the matrix with the column and row numbers are vectors, computed once
    # (`_unfused`), then summed per pixel in the kernel's order.
    xs = tf.cast(tf.range(width), tf.float32)
    ys = tf.cast(tf.range(height), tf.float32)
    across = [_unfused(_product(m[i], xs))[None, :] for i in (0, 3, 6)[:3 if projective else 2]]
    down = [_unfused(_product(m[i], ys))[:, None] for i in (1, 4, 7)[:3 if projective else 2]]
    x = (across[0] + down[0]) + m[2]
    y = (across[1] + down[1]) + m[5]
    if projective:
        projection = (across[2] + down[2]) + 1.0
        x, y = x / projection, y / projection
    return _gather_pixels(image, _round_half_away(y), _round_half_away(x), unfused_index=True)


def rotate(image, degrees):
    """Rotates about the centre (counter-clockwise for positive degrees)."""
    # The matrix in float64, cast once: XLA's cos and sin may differ from TensorFlow's in the
    # last bit, which float64 rounded to float32 hides.
    radians = tf.cast(degrees, tf.float64) * (math.pi / 180.0)
    height = tf.cast(tf.shape(image)[0], tf.float64) - 1.0
    width = tf.cast(tf.shape(image)[1], tf.float64) - 1.0
    cos, sin = tf.cos(radians), tf.sin(radians)
    x_offset = (width - (_product(cos, width) - _product(sin, height))) / 2.0
    y_offset = (height - (_product(sin, width) + _product(cos, height))) / 2.0
    matrix = [cos, -sin, x_offset, sin, cos, y_offset]
    return transform(image, [tf.cast(v, tf.float32) for v in matrix] + [0.0, 0.0])


def _shift(image, dy, dx):
    """Moves the content down `dy` and right `dx` (whole-pixel floats), filling with 128.

    The transform by [1, 0, -dx, 0, 1, -dy] (exact: every source coordinate is an integer), with
    the coordinates in integer arithmetic; the output shape stays static for XLA, unlike pad +
    slice by a tensor amount.
    """
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    dy = _round_half_away(tf.cast(dy, tf.float32))  # whole already: clipped and made int32
    dx = _round_half_away(tf.cast(dx, tf.float32))
    return _gather_pixels(image, tf.range(height)[:, None] - dy, tf.range(width)[None, :] - dx)


def translate_x(image, pixels):
    """Moves the content right by `pixels` (rounded to whole pixels), filling with 128."""
    return _shift(image, 0.0, tf.round(pixels))


def translate_y(image, pixels):
    """Moves the content down by `pixels` (rounded to whole pixels), filling with 128."""
    return _shift(image, tf.round(pixels), 0.0)


def shear_x(image, level):
    return transform(image, [1.0, level, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0])


def shear_y(image, level):
    return transform(image, [1.0, 0.0, 0.0, level, 1.0, 0.0, 0.0, 0.0])


def cutout(image, pad_size, seed):
    """Fills a square of side 2 * pad_size (clipped at the borders) at a random centre with 128."""
    shape = tf.shape(image)
    height, width = shape[0], shape[1]
    center_y = _randint(_fold(seed, 0), height)
    center_x = _randint(_fold(seed, 1), width)
    # On `_rows` (column = position // 3).
    rows = tf.range(height)[:, None]
    cols = (tf.range(width * 3) // 3)[None, :]
    box = ((rows >= center_y - pad_size) & (rows < center_y + pad_size)
           & (cols >= center_x - pad_size) & (cols < center_x + pad_size))
    filled = tf.where(box, tf.constant(int(FILL_VALUE), image.dtype), _rows(image))
    return tf.reshape(filled, shape)


# ---- magnitudes: level in 0..10 -> op argument ---------------------------------------------------

def _random_sign(value, seed):
    return tf.where(_uniform(seed) < 0.5, -value, value)


def _scaled(level, scale: float):
    """level / 10 * scale in float64, as Python computes it from a float level."""
    return _product(tf.cast(level, tf.float64) / MAX_LEVEL, scale)


def _scaled_int(level, scale: float):
    """int(level / 10 * scale) for level >= 0, as an int32 tensor."""
    return tf.cast(tf.floor(_scaled(level, scale)), tf.int32)


def _scaled_float(level, scale: float, offset: float = 0.0):
    return tf.cast(_scaled(level, scale) + offset, tf.float32)


def apply_op(name: str, image, level, seed, consts: dict):
    """Applies op `name` at magnitude `level` (0..10 scale, a number or a scalar tensor) to a
    uint8 image."""
    sign_seed = _fold(seed, 99)
    if name == "AutoContrast":
        return autocontrast(image)
    if name == "Equalize":
        return equalize(image)
    if name == "Invert":
        return invert(image)
    if name == "Rotate":
        return rotate(image, _random_sign(_scaled_float(level, 30.0), sign_seed))
    if name == "Posterize":
        return posterize(image, _scaled_int(level, 4))
    if name == "Solarize":
        return solarize(image, _scaled_int(level, 256))
    if name == "SolarizeAdd":
        return solarize_add(image, _scaled_int(level, 110))
    if name in ("Color", "Contrast", "Brightness", "Sharpness"):
        enhance = {"Color": color, "Contrast": contrast, "Brightness": brightness,
                   "Sharpness": sharpness}[name]
        return enhance(image, _scaled_float(level, 1.8, 0.1))
    if name == "ShearX":
        return shear_x(image, _random_sign(_scaled_float(level, 0.3), sign_seed))
    if name == "ShearY":
        return shear_y(image, _random_sign(_scaled_float(level, 0.3), sign_seed))
    if name == "TranslateX":
        return translate_x(image, _random_sign(_scaled_float(level, consts["translate"]),
                                               sign_seed))
    if name == "TranslateY":
        return translate_y(image, _random_sign(_scaled_float(level, consts["translate"]),
                                               sign_seed))
    if name == "Cutout":
        return cutout(image, _scaled_int(level, consts["cutout"]), seed)
    raise ValueError(f"Unknown augmentation op {name!r}")


OP_NAMES = tuple(sorted(set(RANDAUGMENT_OPS) | {op[0] for sub in POLICY_V0 for op in sub}))
IDENTITY = len(OP_NAMES)  # the op index of "leave the image as it is"


def apply_op_by_index(index, image, level, seed, consts: dict):
    """apply_op(OP_NAMES[index], ...) for an int32 scalar tensor `index`; IDENTITY keeps the
    image. Only the selected op runs; each op is built once, with its magnitude a tensor."""
    level = tf.convert_to_tensor(level, tf.float64)
    branches = [lambda n=name: apply_op(n, image, level, seed, consts) for name in OP_NAMES]
    return _select(index, branches + [lambda: image])


def _checked(image, reference):
    return tf.ensure_shape(tf.reshape(image, tf.shape(reference)), reference.shape)


def _policy_tables(policy):
    """[N, 2] int32 op indices, float32 probabilities and float64 levels of a policy."""
    ops = [[OP_NAMES.index(name) for name, _, _ in sub] for sub in policy]
    probabilities = [[probability for _, probability, _ in sub] for sub in policy]
    levels = [[level for _, _, level in sub] for sub in policy]
    return (tf.constant(ops, tf.int32), tf.constant(probabilities, tf.float32),
            tf.constant(levels, tf.float64))


def autoaugment(image, seed, policy=POLICY_V0):
    """One random sub-policy of `policy`; each of its ops applied with its probability."""
    seed = tf.cast(seed, tf.int32)
    ops, probabilities, levels = _policy_tables(policy)
    index = _randint(_fold(seed, 0), len(policy))
    result = image
    # tf.gather, not tensor[index]: under XLA, slicing at a runtime index makes the index a
    # compile-time constant, and the function was compiled again for every image.
    ops, probabilities, levels = (tf.gather(table, index) for table in (ops, probabilities, levels))
    for position in range(ops.shape[0]):
        op_seed = _fold(seed, 10 + position)
        apply = _uniform(_fold(op_seed, 1)) < probabilities[position]
        op = tf.where(apply, ops[position], IDENTITY)
        result = _checked(apply_op_by_index(op, result, levels[position], op_seed,
                                            AUTOAUGMENT_CONSTS), image)
    return result


def randaugment(image, seed, num_layers: int = 2, magnitude: float = 10):
    """`num_layers` ops drawn uniformly from RANDAUGMENT_OPS, each at `magnitude`."""
    seed = tf.cast(seed, tf.int32)
    table = tf.constant([OP_NAMES.index(name) for name in RANDAUGMENT_OPS], tf.int32)
    for layer in range(num_layers):
        layer_seed = _fold(seed, layer)
        index = _randint(_fold(layer_seed, 0), len(RANDAUGMENT_OPS))
        image = _checked(apply_op_by_index(tf.gather(table, index), image, float(magnitude),
                                           _fold(layer_seed, 1), RANDAUGMENT_CONSTS), image)
    return image


def get_augment_fn(name: str, num_layers: int = 2, magnitude: float = 10):
    """fn(uint8 image, seed [2]) -> uint8 image for 'autoaugment' or 'randaugment'."""
    if name == "autoaugment":
        return autoaugment
    if name == "randaugment":
        return lambda image, seed: randaugment(image, seed, num_layers, magnitude)
    raise ValueError(f"Unknown augment_name {name!r}: use 'autoaugment' or 'randaugment'")


def augment_batch(images, seeds, augment_fn):
    """`augment_fn(image, seed)` applied to each image of a batch: [B, H, W, 3] images (uint8, or
    float in [0, 255], each rounded to uint8 as the loop takes it) and int32 seeds [B, 2] ->
    uint8 [B, H, W, 3] (image i is exactly augment_fn(round(images[i]), seeds[i])).

    A loop that takes image i from the batch (rounded and cast in the same pass) and writes its
    result in place into a TensorArray. The taken image is a buffer of its own under XLA as long
    as the ops receive it through a Case (`_select`) whose index XLA cannot fold, as in the
    policies: a Case operand is materialised. With a constant index XLA inlines the op, fuses the
    slice into it, and the op indexes the batch pixel by pixel (Sharpness 0.69 vs 0.09 ms per
    image). Measured on
    the compiled AutoAugment + normalise program, 224 px, one thread: 0.031 ms per image of loop
    overhead this way, 0.052 with the loop carrying the next image (two more copies of it per
    step) after a separate rounding pass over the whole batch.
    """
    if images.shape[0] == 0:
        return tf.zeros(images.shape, tf.uint8)
    seeds = tf.cast(seeds, tf.int32)
    count = tf.shape(images)[0]

    def body(i, output):
        image = tf.gather(images, i)
        if image.dtype != tf.uint8:
            image = tf.cast(tf.round(image), tf.uint8)
        return i + 1, output.write(i, _checked(augment_fn(image, seeds[i]), image))

    # A TensorArray: written in place (one image per step) in TensorFlow's kernels and in XLA.
    output = tf.TensorArray(tf.uint8, size=count, element_shape=images.shape[1:])
    _, output = tf.while_loop(lambda i, output: i < count, body, (tf.constant(0), output))
    return tf.ensure_shape(output.stack(), images.shape)


def get_batch_augment_fn(name: str, num_layers: int = 2, magnitude: float = 10,
                         jit_compile: bool = True):
    """fn(images [B, H, W, 3], seeds [B, 2]) -> uint8 images, for the input pipeline (images
    uint8, or float in [0, 255], rounded as in `augment_batch`).

    Compiled with XLA by default: the ops then run as fused loops over the pixels, several times
    faster on CPU than TensorFlow's kernels (a 256-entry lookup is a Gather kernel at ~7 ns per
    pixel in TensorFlow, a vectorised loop in XLA), and one compiled program augments the whole
    batch. Pixel values are the same either way (tested).
    """
    augment_fn = get_augment_fn(name, num_layers, magnitude)
    return tf.function(lambda images, seeds: augment_batch(images, seeds, augment_fn),
                       jit_compile=jit_compile, autograph=False)


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
