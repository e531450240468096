"""efficientnet.data.augment: each op keeps shape and dtype; policies are seeded graph ops."""

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageEnhance, ImageOps

from efficientnet.data import augment

SEED = tf.constant([1, 2], tf.int32)


def _image(height=24, width=32, seed=0):
    rng = np.random.default_rng(seed)
    return tf.constant(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


@pytest.mark.parametrize("name", augment.OP_NAMES)
@pytest.mark.parametrize("level", [0, 5, 10])
def test_op_keeps_shape_and_dtype_and_is_deterministic(name, level):
    image = _image()
    for consts in (augment.AUTOAUGMENT_CONSTS, augment.RANDAUGMENT_CONSTS):
        out = augment.apply_op(name, image, level, SEED, consts)
        assert out.shape == image.shape and out.dtype == tf.uint8
        again = augment.apply_op(name, image, level, SEED, consts)
        np.testing.assert_array_equal(out.numpy(), again.numpy())


def test_op_table_matches_the_policies():
    assert len(augment.POLICY_V0) == 25
    assert all(len(sub_policy) == 2 for sub_policy in augment.POLICY_V0)
    assert len(augment.RANDAUGMENT_OPS) == 16
    for sub_policy in augment.POLICY_V0:
        for name, probability, level in sub_policy:
            assert name in augment.OP_NAMES and 0 <= probability <= 1 and 0 <= level <= 10
    with pytest.raises(ValueError, match="Unknown augmentation op 'Blur'"):
        augment.apply_op("Blur", _image(), 5, SEED, augment.RANDAUGMENT_CONSTS)


def test_pixel_ops_match_their_definitions():
    image = _image()
    pixels = image.numpy().astype(int)
    np.testing.assert_array_equal(augment.invert(image).numpy(), 255 - pixels)
    np.testing.assert_array_equal(augment.solarize(image, 128).numpy(),
                                  np.where(pixels < 128, pixels, 255 - pixels))
    np.testing.assert_array_equal(augment.solarize_add(image, 30).numpy(),
                                  np.where(pixels < 128, np.minimum(pixels + 30, 255), pixels))
    np.testing.assert_array_equal(augment.posterize(image, 2).numpy(), pixels & 0xC0)
    np.testing.assert_array_equal(augment.brightness(image, 0.0).numpy(), np.zeros_like(pixels))
    np.testing.assert_array_equal(augment.color(image, 1.0).numpy(), pixels)
    grey = augment.color(image, 0.0).numpy()
    np.testing.assert_array_equal(grey[..., 0], grey[..., 1])
    contrast = augment.contrast(image, 0.0).numpy()
    assert contrast.min() == contrast.max()  # all mean grey


@pytest.mark.parametrize("seed", range(6))
def test_equalize_and_autocontrast_match_pil_on_varied_images(seed):
    rng = np.random.default_rng(seed)
    height, width = (int(v) for v in rng.integers(2, 70, 2))
    pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    if seed % 3 == 1:
        pixels = (pixels // 7 + 30).astype(np.uint8)  # narrow range
    if seed % 3 == 2:
        pixels[..., 1] = 200  # one flat channel
    pil = Image.fromarray(pixels)
    np.testing.assert_array_equal(augment.equalize(tf.constant(pixels)).numpy(),
                                  np.asarray(ImageOps.equalize(pil)))
    np.testing.assert_array_equal(augment.autocontrast(tf.constant(pixels)).numpy(),
                                  np.asarray(ImageOps.autocontrast(pil)))


def test_equalize_and_autocontrast_match_pil():
    image = _image(40, 30, seed=3)
    pil = Image.fromarray(image.numpy())
    np.testing.assert_array_equal(augment.equalize(image).numpy(),
                                  np.asarray(ImageOps.equalize(pil)))
    low_contrast = tf.constant(image.numpy() // 4 + 60)
    np.testing.assert_array_equal(
        augment.autocontrast(low_contrast).numpy(),
        np.asarray(ImageOps.autocontrast(Image.fromarray(low_contrast.numpy()))))
    flat = tf.fill([8, 8, 3], tf.constant(77, tf.uint8))
    np.testing.assert_array_equal(augment.equalize(flat).numpy(), flat.numpy())
    np.testing.assert_array_equal(augment.autocontrast(flat).numpy(), flat.numpy())


@pytest.mark.parametrize("seed", [0, 1])
def test_colour_ops_match_pil_exactly(seed):
    image = _image(37, 41, seed=seed)
    if seed == 1:
        image = tf.constant(image.numpy() // 4 + 60)  # low contrast
    pil = Image.fromarray(image.numpy())
    np.testing.assert_array_equal(augment.grayscale(image).numpy()[..., 0],
                                  np.asarray(pil.convert("L")))
    for factor in (0.0, 0.1, 0.5, 1.0, 1.3, 1.9):
        for op, enhancer in ((augment.color, ImageEnhance.Color),
                             (augment.contrast, ImageEnhance.Contrast),
                             (augment.brightness, ImageEnhance.Brightness),
                             (augment.sharpness, ImageEnhance.Sharpness)):
            np.testing.assert_array_equal(op(image, factor).numpy(),
                                          np.asarray(enhancer(pil).enhance(factor)),
                                          err_msg=f"{op.__name__} {factor}")
    for threshold in (0, 1, 128, 255, 256):
        np.testing.assert_array_equal(augment.solarize(image, threshold).numpy(),
                                      np.asarray(ImageOps.solarize(pil, threshold)))
    for bits in range(1, 9):
        np.testing.assert_array_equal(augment.posterize(image, bits).numpy(),
                                      np.asarray(ImageOps.posterize(pil, bits)))


def test_geometric_ops_move_pixels_and_fill_128():
    image = _image()
    np.testing.assert_array_equal(augment.rotate(image, 0.0).numpy(), image.numpy())
    shifted = augment.translate_x(image, 5.0).numpy()
    np.testing.assert_array_equal(shifted[:, 5:], image.numpy()[:, :-5])
    assert (shifted[:, :5] == 128).all()
    shifted = augment.translate_y(image, -3.0).numpy()
    np.testing.assert_array_equal(shifted[:-3], image.numpy()[3:])
    assert (shifted[-3:] == 128).all()
    rotated = augment.rotate(tf.fill([20, 20, 3], tf.constant(7, tf.uint8)), 45.0).numpy()
    assert rotated[0, 0, 0] == 128 and rotated[10, 10, 0] == 7
    for pixels in (-300.0, -45.0, -3.0, 0.0, 2.0, 7.0, 250.0):  # pad + slice == the transform
        for op, matrix in ((augment.translate_x, [1.0, 0.0, -pixels, 0.0, 1.0, 0.0, 0.0, 0.0]),
                           (augment.translate_y, [1.0, 0.0, 0.0, 0.0, 1.0, -pixels, 0.0, 0.0])):
            np.testing.assert_array_equal(op(image, pixels).numpy(),
                                          _kernel_transform(image, matrix).numpy())
    sheared = augment.shear_x(image, 0.3).numpy()
    np.testing.assert_array_equal(sheared[0], image.numpy()[0])  # row 0 does not move


def _kernel_transform(image, matrix):
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=image[None], transforms=tf.constant([matrix], tf.float32),
        output_shape=tf.shape(image)[:2], fill_value=128.0, interpolation="NEAREST",
        fill_mode="CONSTANT")[0]


def test_transform_equals_tensorflows_projective_transform_kernel():
    rng = np.random.default_rng(5)
    for _ in range(60):
        height, width = (int(v) for v in rng.integers(5, 60, 2))
        image = tf.constant(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
        level = float(rng.choice([0.03 * k for k in range(-10, 11)]))  # ties at .5 included
        radians = float(rng.uniform(-30, 30)) * np.pi / 180
        cos, sin = np.cos(radians), np.sin(radians)
        for matrix in ([1.0, level, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0],
                       [1.0, 0.0, 0.0, level, 1.0, 0.0, 0.0, 0.0],
                       [cos, -sin, 3.5, sin, cos, -2.5, 0.0, 0.0],
                       [1.0, 0.1, 2.0, 0.05, 0.9, 1.0, 0.002, -0.001]):
            np.testing.assert_array_equal(augment.transform(image, matrix).numpy(),
                                          _kernel_transform(image, matrix).numpy(),
                                          err_msg=f"{height}x{width} {matrix}")


def test_cutout_fills_a_square_with_128():
    image = tf.zeros([50, 50, 3], tf.uint8)
    out = augment.cutout(image, 5, SEED).numpy()
    filled = np.argwhere(out[..., 0] == 128)
    assert 0 < len(filled) <= 100
    height = filled[:, 0].max() - filled[:, 0].min() + 1
    width = filled[:, 1].max() - filled[:, 1].min() + 1
    assert len(filled) == height * width  # a (clipped) rectangle
    assert height <= 10 and width <= 10
    image = _image(30, 40)  # the rest of the image is untouched, also at the borders
    for seed in range(8):
        out = augment.cutout(image, 12, tf.constant([seed, 3])).numpy()
        box = (out == 128).all(axis=-1) & (image.numpy() != 128).any(axis=-1)
        np.testing.assert_array_equal(out[~box], image.numpy()[~box])
        assert box.sum() > 0


@pytest.mark.parametrize("policy", ["autoaugment", "randaugment"])
def test_policies_are_seeded(policy):
    fn = augment.get_augment_fn(policy, num_layers=2, magnitude=9)
    image = _image(32, 32)
    outputs = [fn(image, tf.constant([seed, 0])).numpy() for seed in range(12)]
    for seed, out in enumerate(outputs):
        assert out.shape == (32, 32, 3) and out.dtype == np.uint8
        np.testing.assert_array_equal(out, fn(image, tf.constant([seed, 0])).numpy())
    distinct = {out.tobytes() for out in outputs}
    assert len(distinct) >= 6  # different seeds pick different ops


@pytest.mark.parametrize("policy", ["autoaugment", "randaugment"])
@pytest.mark.parametrize("jit_compile", [True, False])
def test_compiled_batch_augmentation_equals_each_image_augmented_alone(policy, jit_compile):
    """The input pipeline's XLA program (and the same function without XLA) draws the same ops
    and gives the same pixels as the eager functions (which match PIL): no FMA fusion, no
    float/ranged random draws under XLA."""
    rng = np.random.default_rng(3)
    images = tf.constant(rng.integers(0, 256, (12, 28, 36, 3), dtype=np.uint8))
    batch_fn = augment.get_batch_augment_fn(policy, num_layers=2, magnitude=9,
                                            jit_compile=jit_compile)
    one_fn = augment.get_augment_fn(policy, num_layers=2, magnitude=9)
    changed = 0
    for round_ in range(2):
        seeds = tf.constant(rng.integers(0, 2**31 - 1, (12, 2)), tf.int32)
        batch = batch_fn(images, seeds).numpy()
        for i in range(12):
            alone = one_fn(images[i], seeds[i]).numpy()
            np.testing.assert_array_equal(batch[i], alone, err_msg=f"round {round_} image {i}")
            changed += int((alone != images[i].numpy()).any())
    assert changed >= 12  # most images were really augmented


@pytest.mark.parametrize("name", augment.OP_NAMES)
def test_each_op_compiled_with_xla_equals_the_eager_op(name):
    """Constant levels (RandAugment) and levels read at run time (AutoAugment's tables) both:
    XLA folds constants and fuses multiply-adds differently in the two cases."""
    rng = np.random.default_rng(4)
    images = [tf.constant(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)) for _ in range(3)]
    for level in (1, 4, 9):
        constant = tf.function(
            lambda image, seed, lv=level: augment.apply_op(name, image, lv, seed,
                                                 augment.RANDAUGMENT_CONSTS), jit_compile=True)
        runtime = tf.function(
            lambda image, seed, lv: augment.apply_op(name, image, lv, seed,
                                                     augment.RANDAUGMENT_CONSTS), jit_compile=True)
        for index, image in enumerate(images):
            seed = tf.constant([index, level])
            eager = augment.apply_op(name, image, level, seed, augment.RANDAUGMENT_CONSTS).numpy()
            np.testing.assert_array_equal(constant(image, seed).numpy(), eager,
                                          err_msg=f"{name} level {level} constant")
            np.testing.assert_array_equal(
                runtime(image, seed, tf.constant(level, tf.float64)).numpy(), eager,
                err_msg=f"{name} level {level} at run time")


def test_sharpness_matches_pil_at_the_top_of_its_range():
    """The SMOOTH filter's rounding division is a multiply and a shift: exact up to the largest
    3x3 total (13 * 255 + 6), reached on saturated images; eager and XLA both."""
    rng = np.random.default_rng(6)
    pixels = rng.choice(np.array([0, 250, 254, 255], np.uint8), (33, 47, 3), p=[.1, .1, .2, .6])
    pixels[5:12, 7:20] = 255  # whole 3x3 neighbourhoods at 255
    compiled = tf.function(augment.sharpness, jit_compile=True)
    pil = ImageEnhance.Sharpness(Image.fromarray(pixels))
    for factor in (0.0, 0.4, 1.7):
        expected = np.asarray(pil.enhance(factor))
        np.testing.assert_array_equal(augment.sharpness(tf.constant(pixels), factor).numpy(),
                                      expected)
        np.testing.assert_array_equal(compiled(tf.constant(pixels), factor).numpy(), expected)


def test_far_translations_fill_everything_and_compile():
    image = _image(20, 30)
    compiled = tf.function(lambda im, px: augment.translate_x(im, px), jit_compile=True)
    for pixels in (1e9, -1e9, 3e38, -3e38, 30.0, -31.0):
        out = augment.translate_x(image, pixels).numpy()
        assert (out == 128).all()
        np.testing.assert_array_equal(compiled(image, tf.constant(pixels)).numpy(), out)
        assert (augment.translate_y(image, pixels).numpy() == 128).all()
    far = augment.transform(image, [1.0, 0.0, 5e9, 0.0, 1.0, 0.0, 0.0, 0.0]).numpy()
    assert (far == 128).all()


def test_augment_batch_of_one_and_of_none():
    fn = augment.get_augment_fn("randaugment", num_layers=2, magnitude=9)
    image = _image(16, 16)
    one = augment.augment_batch(image[None], tf.constant([[4, 5]]), fn).numpy()
    np.testing.assert_array_equal(one[0], fn(image, tf.constant([4, 5])).numpy())
    empty = tf.zeros([0, 16, 16, 3], tf.uint8)
    assert augment.augment_batch(empty, tf.zeros([0, 2], tf.int32), fn).shape == (0, 16, 16, 3)


def test_blend_under_xla_rounds_the_product_on_its_own():
    """A multiply and add fused into an FMA round once; PIL rounds twice (fails without
    augment._product's barrier on this machine's FMA units, 300 of 100,000 pixels)."""
    rng = np.random.default_rng(1)
    first = tf.constant(rng.integers(0, 256, (100000,)).astype(np.uint8))
    second = tf.constant(rng.integers(0, 256, (100000,)).astype(np.uint8))
    for factor in (1.72, 1.36):
        compiled = tf.function(lambda a, b, f=factor: augment.blend(a, b, f), jit_compile=True)
        expected = np.clip(first.numpy() + np.float32(factor) * (
            second.numpy().astype(np.float32) - first.numpy()), 0, 255).astype(np.uint8)
        np.testing.assert_array_equal(compiled(first, second).numpy(), expected)


@pytest.mark.parametrize("policy", ["autoaugment", "randaugment"])
def test_policies_are_graph_ops_without_py_function(policy):
    fn = tf.function(augment.get_augment_fn(policy))
    graph = fn.get_concrete_function(tf.TensorSpec([32, 32, 3], tf.uint8),
                                     tf.TensorSpec([2], tf.int32)).graph
    op_types = {op.type for op in graph.get_operations()}
    for function in graph.as_graph_def().library.function:
        op_types |= {node.op for node in function.node_def}
    assert not op_types & {"PyFunc", "EagerPyFunc", "PyFuncStateless"}
    assert "Case" in op_types or "StatelessCase" in op_types
    # Branch selection stays a call (not lowered to Switch/Merge, whose untaken nodes all run).
    nodes = list(graph.as_graph_def().node)
    for function in graph.as_graph_def().library.function:
        nodes += list(function.node_def)
    selections = [node for node in nodes if node.op in ("Case", "StatelessCase", "If",
                                                        "StatelessIf")]
    assert selections
    assert all(not node.attr["_lower_using_switch_merge"].b for node in selections)


def test_unknown_augment_name():
    with pytest.raises(ValueError, match="Unknown augment_name 'cutout'"):
        augment.get_augment_fn("cutout")


def _batch():
    images = tf.constant(np.random.default_rng(0).uniform(-2, 2, (6, 16, 16, 3)), tf.float32)
    labels = tf.one_hot([0, 1, 2, 3, 4, 0], 5)
    return images, labels


def test_mixup_blends_images_and_labels():
    images, labels = _batch()
    mixed, mixed_labels = augment.mixup(images, labels, SEED, 0.4)
    assert mixed.shape == images.shape and mixed.dtype == images.dtype
    np.testing.assert_allclose(mixed_labels.numpy().sum(axis=1), np.ones(6), rtol=1e-6)
    lam = float(mixed_labels[1, 1])  # image 1 (label 1) is mixed with image 4 (label 4)
    assert 0.0 < lam < 1.0  # a real blend, not a pass-through
    for i in range(6):  # every image with its mirror in the batch, labels the same way
        j = 5 - i
        np.testing.assert_allclose(mixed.numpy()[i],
                                   lam * images.numpy()[i] + (1 - lam) * images.numpy()[j],
                                   atol=1e-5)
        np.testing.assert_allclose(mixed_labels.numpy()[i],
                                   lam * labels.numpy()[i] + (1 - lam) * labels.numpy()[j],
                                   atol=1e-6)
    again, _ = augment.mixup(images, labels, SEED, 0.4)
    np.testing.assert_array_equal(mixed.numpy(), again.numpy())


def test_cutmix_pastes_a_box_and_weights_labels_by_area():
    images, labels = _batch()
    boxes = 0
    for seed in range(5):
        mixed, mixed_labels = augment.cutmix(images, labels, tf.constant([seed, 9]), 1.0)
        assert mixed.shape == images.shape and mixed.dtype == images.dtype
        pasted = (mixed.numpy()[1] != images.numpy()[1]).any(axis=-1)
        boxes += int(pasted.any())
        rows, cols = np.nonzero(pasted)
        if len(rows):  # one axis-aligned box, the same for every image of the batch
            assert pasted.sum() == (np.ptp(rows) + 1) * (np.ptp(cols) + 1)
        np.testing.assert_array_equal(mixed.numpy()[1][pasted], images.numpy()[4][pasted])
        np.testing.assert_array_equal(mixed.numpy()[1][~pasted], images.numpy()[1][~pasted])
        for i in range(6):
            np.testing.assert_array_equal(mixed.numpy()[i][pasted], images.numpy()[5 - i][pasted])
        np.testing.assert_allclose(float(mixed_labels[1, 4]), pasted.mean(), atol=1e-6)
        np.testing.assert_allclose(float(mixed_labels[1, 1]), 1 - pasted.mean(), atol=1e-6)
        np.testing.assert_allclose(mixed_labels.numpy().sum(axis=1), np.ones(6), rtol=1e-6)
    assert boxes >= 3  # most seeds really paste a box


def test_mix_batch_switches_and_passes_through():
    images, labels = _batch()
    same_images, same_labels = augment.mix_batch(images, labels, SEED)
    np.testing.assert_array_equal(same_images.numpy(), images.numpy())
    np.testing.assert_array_equal(same_labels.numpy(), labels.numpy())
    seed = tf.constant([3, 0])
    only_mixup = augment.mix_batch(images, labels, seed, 0.2, 0.0)
    np.testing.assert_array_equal(only_mixup[0].numpy(),
                                  augment.mixup(images, labels, seed, 0.2)[0].numpy())
    only_cutmix = augment.mix_batch(images, labels, seed, 0.0, 1.0)
    np.testing.assert_array_equal(only_cutmix[0].numpy(),
                                  augment.cutmix(images, labels, seed, 1.0)[0].numpy())
    picked = set()  # with both alphas each batch is exactly one of the two
    for s in range(12):
        seed = tf.constant([s, 0])
        out = augment.mix_batch(images, labels, seed, 0.2, 1.0)[0].numpy()
        assert out.shape == images.shape
        if np.array_equal(out, augment.mixup(images, labels, seed, 0.2)[0].numpy()):
            picked.add("mixup")
        else:
            np.testing.assert_array_equal(out,
                                          augment.cutmix(images, labels, seed, 1.0)[0].numpy())
            picked.add("cutmix")
    assert picked == {"mixup", "cutmix"}


def test_unfused_keeps_every_value_and_shape():
    """The identity-matrix dot that stops XLA fusing index arithmetic into gathers is exact for
    int32 below 2**24 and finite float32, at sizes that are not a multiple of its width."""
    ints = tf.constant([[0, 1, -1, 2**24 - 1, -(2**24 - 1)], [7, 255, 767, 50177, -3]], tf.int32)
    floats = tf.constant([0.1, -0.0, 123.456, -1e30, 3e38, 1.5e-38, 2.5], tf.float32)
    compiled = tf.function(augment._unfused, jit_compile=True)
    for values in (ints, floats, ints[:, :3]):
        for fn in (augment._unfused, compiled):
            out = fn(values)
            assert out.dtype == values.dtype and out.shape == values.shape
            np.testing.assert_array_equal(out.numpy(), values.numpy())
    unknown = tf.function(augment._unfused,
                          input_signature=[tf.TensorSpec([None], tf.int32)]).get_concrete_function()
    assert unknown(tf.constant([3, 4])).numpy().tolist() == [3, 4]  # no static size: as it is
