"""efficientnet.data: preprocessing, parse_record and build_dataset on small generated TFRecords."""

import collections
import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from efficientnet.data import (
    DataConfig,
    build_dataset,
    normalize_images,
    parse_record,
    preprocess_for_eval,
    preprocess_for_train,
)
from efficientnet.data.preprocessing import center_crop_window, resize
from efficientnet.models import get_spec
from tfrecord_tools.example import image_example, serialize_example

SPEC = get_spec("efficientnet-b0")
NUM_RECORDS = 23  # not a multiple of the batch sizes used: the eval remainder must survive


def _encode(array, fmt="JPEG"):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def _image(seed, height=40, width=56):
    """A smooth random picture (JPEG-friendly, unlike white noise)."""
    coarse = np.random.default_rng(seed).integers(0, 256, (4, 5, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(coarse).resize((width, height), Image.BILINEAR))


def _write_shards(directory, labels, num_shards, prefix="train"):
    """Shards of records with the given 1-based labels; record i is an image from seed i."""
    paths = []
    for shard in range(num_shards):
        path = directory / f"{prefix}-{shard:05d}-of-{num_shards:05d}"
        with tf.io.TFRecordWriter(str(path)) as writer:
            for i in range(shard, len(labels), num_shards):
                image = _image(i)
                writer.write(image_example(_encode(image), 40, 56, int(labels[i])))
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    directory = tmp_path_factory.mktemp("records")
    labels = [1 + i % 5 for i in range(NUM_RECORDS)]
    _write_shards(directory, labels, 3, "train")
    _write_shards(directory, labels, 3, "validation")
    return directory, labels


def _config(**overrides):
    return DataConfig(**{"image_size": 32, "num_label_classes": 5, **overrides})


# ---- preprocessing -------------------------------------------------------------------------------

def test_center_crop_window_uses_crop_padding():
    # 224 / (224 + 32) * 100 = 87.5 -> 87, centred with the reference's rounding.
    window = center_crop_window(tf.constant([100, 150, 3]), 224, 32).numpy().tolist()
    assert window == [7, 32, 87, 87]
    assert center_crop_window(tf.constant([28, 28, 3]), 32, 0).numpy().tolist() == [0, 0, 28, 28]


def test_preprocess_for_eval_formats_agree_and_range():
    image = _image(0)
    from_png = preprocess_for_eval(_encode(image, "PNG"), 32, resize_method="bilinear")
    from_bmp = preprocess_for_eval(_encode(image, "BMP"), 32, resize_method="bilinear")
    from_jpeg = preprocess_for_eval(_encode(image, "JPEG"), 32, resize_method="bilinear")
    assert from_png.shape == (32, 32, 3) and from_png.dtype == tf.float32
    # The centre crop of 32 / (32 + 32) * 40 = 20 pixels at (10, 18), resized to 32.
    assert center_crop_window(tf.constant(image.shape), 32, 32).numpy().tolist() == [10, 18, 20,
                                                                                     20]
    expected = resize(tf.constant(image[10:30, 18:38]), 32, "bilinear").numpy()
    np.testing.assert_allclose(from_png.numpy(), expected, rtol=0, atol=1e-4)
    np.testing.assert_array_equal(from_png.numpy(), from_bmp.numpy())
    # JPEG is lossy, but the same crop of the same picture.
    assert np.abs(from_png.numpy() - from_jpeg.numpy()).mean() < 3
    for method in ("bicubic", "bicubic_tf1", "bilinear"):
        pixels = preprocess_for_eval(_encode(image, "PNG"), 64, resize_method=method).numpy()
        assert 0.0 <= pixels.min() and pixels.max() <= 255.0


def test_bicubic_tf1_is_the_exact_tf1_resize():
    # half_pixel_centers=False samples input pixel 2i at output i for a 2x downscale, exactly.
    image = tf.constant(_image(1, 32, 32), tf.float32)
    tf1 = resize(image, 16, "bicubic_tf1").numpy()
    np.testing.assert_allclose(tf1, image.numpy()[::2, ::2], atol=1e-3)
    tf2 = resize(image, 16, "bicubic").numpy()
    assert np.abs(tf2 - image.numpy()[::2, ::2]).mean() > 1.0
    with pytest.raises(ValueError, match="resize_method 'lanczos'"):
        resize(image, 16, "lanczos")


def test_preprocess_for_train_is_seeded_random_crop():
    data = _encode(_image(2, 120, 160))
    first = preprocess_for_train(data, 48, seed=[3, 4]).numpy()
    again = preprocess_for_train(data, 48, seed=[3, 4]).numpy()
    other = preprocess_for_train(data, 48, seed=[5, 6]).numpy()
    assert first.shape == (48, 48, 3) and first.dtype == np.float32
    assert 0.0 <= first.min() and first.max() <= 255.0
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    # It is the resized sampled window of the picture (not the whole image), maybe mirrored.
    from efficientnet.data.preprocessing import _random_crop_window

    crop_seed = tf.random.experimental.stateless_fold_in(tf.constant([3, 4]), 0)
    window = _random_crop_window(tf.constant([120, 160, 3]),
                                 tf.constant([[[0.0, 0.0, 1.0, 1.0]]]), crop_seed).numpy()
    y, x, h, w = (int(v) for v in window)
    assert (h, w) != (120, 160)
    decoded = tf.io.decode_jpeg(data, channels=3)
    expected = resize(decoded[y:y + h, x:x + w], 48, "bicubic").numpy()
    # JPEG chroma at the crop's edges decodes a little differently when cropped in the decoder.
    errors = sorted(np.abs(first - candidate).mean() for candidate in (expected,
                                                                       expected[:, ::-1]))
    assert errors[0] < 0.2 and errors[1] > 5
    # Works inside a graph without autograph (the exporter's serving function does this).
    graph_fn = tf.function(lambda b: preprocess_for_train(b, 48, seed=[3, 4]), autograph=False)
    np.testing.assert_array_equal(graph_fn(tf.constant(data)).numpy(), first)


def test_normalize_images_uses_spec_mean_and_std():
    pixels = tf.fill([2, 4, 4, 3], 100.0)
    normalised = normalize_images(pixels, SPEC).numpy()
    expected = (100.0 - np.array(SPEC.mean)) / np.array(SPEC.std)
    np.testing.assert_allclose(normalised[0, 0, 0], expected, rtol=1e-6)
    assert normalised.dtype == np.float32
    varied = np.random.default_rng(0).uniform(0, 255, (2, 4, 4, 3)).astype(np.float32)
    np.testing.assert_allclose(normalize_images(tf.constant(varied), SPEC).numpy(),
                               (varied - np.array(SPEC.mean)) / np.array(SPEC.std), rtol=1e-5,
                               atol=1e-5)
    half = normalize_images(tf.cast(pixels, tf.bfloat16), SPEC)
    assert half.dtype == tf.bfloat16
    np.testing.assert_allclose(tf.cast(half, tf.float32).numpy()[0, 0, 0], expected, rtol=1e-2)


# ---- parse_record and errors ---------------------------------------------------------------------

def test_parse_record_fields_and_missing_image_error(tmp_path):
    record = image_example(b"\xff\xd8\xffjpeg", 1, 1, 7)
    parsed = parse_record(tf.constant(record))
    assert parsed["image_bytes"].numpy() == b"\xff\xd8\xffjpeg"
    assert int(parsed["label"]) == 7
    with pytest.raises(tf.errors.InvalidArgumentError, match="no .*'image/encoded'"):
        parse_record(tf.constant(serialize_example({"image/class/label": 3})))

    path = tmp_path / "train-00000-of-00001"
    with tf.io.TFRecordWriter(str(path)) as writer:
        writer.write(serialize_example({"image/class/label": 3, "other": b"x"}))
    dataset = build_dataset(str(path), False, 4, SPEC, _config())
    with pytest.raises(tf.errors.InvalidArgumentError, match="image/encoded"):
        next(iter(dataset))


def test_build_dataset_pattern_errors(tmp_path):
    with pytest.raises(ValueError, match=r"No TFRecord files match '.*/nothing-\*'"):
        build_dataset(str(tmp_path / "nothing-*"), True, 4, SPEC, _config())
    with pytest.raises(ValueError, match="is a directory"):
        build_dataset(str(tmp_path), True, 4, SPEC, _config())
    with pytest.raises(ValueError, match="No file pattern"):
        build_dataset(None, True, 4, SPEC, _config())


def test_labels_out_of_range_give_clear_error(records):
    directory, _ = records
    dataset = build_dataset(str(directory / "validation-*"), False, 8, SPEC,
                            _config(num_label_classes=3))
    with pytest.raises(tf.errors.InvalidArgumentError, match="label out of range"):
        for _ in dataset:
            pass


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="--augment_name='autoaug' is not one of: none, "
                                         "autoaugment, randaugment"):
        DataConfig(augment_name="autoaug")
    with pytest.raises(ValueError, match="--resize_method='area' is not one of"):
        DataConfig(resize_method="area")
    with pytest.raises(ValueError, match="--dtype='int8' is not one of: float32, float16"):
        DataConfig(dtype="int8")
    assert DataConfig(augment_name="none").augment_name is None


# ---- build_dataset -------------------------------------------------------------------------------

def _eval_labels(dataset):
    labels, sizes = [], []
    for images, batch_labels in dataset:
        assert images.dtype == tf.float32 and images.shape[1:] == (32, 32, 3)
        assert batch_labels.dtype == tf.int32
        labels += batch_labels.numpy().tolist()
        sizes.append(int(images.shape[0]))
    return labels, sizes


def test_eval_sees_every_record_once_with_remainder(records):
    directory, labels = records
    dataset = build_dataset(str(directory / "validation-*"), False, 5, SPEC, _config())
    seen, sizes = _eval_labels(dataset)
    assert sizes == [5, 5, 5, 5, 3]
    assert collections.Counter(seen) == collections.Counter(label - 1 for label in labels)


def test_eval_1001_classes_keeps_labels(records):
    directory, labels = records
    dataset = build_dataset(str(directory / "validation-*"), False, 64, SPEC,
                            _config(num_label_classes=1001))
    seen, _ = _eval_labels(dataset)
    assert sorted(seen) == sorted(labels)


def test_eval_images_are_normalised_centre_crops(records):
    directory, _ = records
    dataset = build_dataset(str(directory / "validation-00000-*"), False, 1, SPEC,
                            _config(resize_method="bilinear"))
    images, _ = next(iter(dataset))
    expected = preprocess_for_eval(_encode(_image(0)), 32, 32, "bilinear")
    np.testing.assert_allclose(images[0].numpy(), normalize_images(expected, SPEC).numpy(),
                               atol=1e-5)


@pytest.mark.parametrize("pipelines", [2, 4])
def test_eval_sharded_per_input_pipeline_is_a_partition(records, pipelines):
    # 3 files: 2 pipelines shard by file, 4 pipelines fall back to sharding records.
    directory, labels = records
    seen = []
    for pipeline_id in range(pipelines):
        context = tf.distribute.InputContext(pipelines, pipeline_id, 1)
        dataset = build_dataset(str(directory / "validation-*"), False, 4, SPEC, _config(),
                                input_context=context)
        seen += _eval_labels(dataset)[0]
    assert collections.Counter(seen) == collections.Counter(label - 1 for label in labels)


def test_training_batches_one_hot_repeat_and_drop_remainder(records):
    directory, _ = records
    dataset = build_dataset(str(directory / "train-*"), True, 8, SPEC, _config(seed=1))
    batches = list(dataset.take(6))  # 48 > 23 records: it repeats
    assert len(batches) == 6
    classes = set()
    for images, labels in batches:
        assert images.shape == (8, 32, 32, 3) and images.dtype == tf.float32
        assert labels.shape == (8, 5) and labels.dtype == tf.float32
        np.testing.assert_array_equal(labels.numpy().sum(axis=1), np.ones(8))
        assert set(np.unique(labels.numpy())) <= {0.0, 1.0}
        classes |= set(labels.numpy().argmax(axis=1).tolist())
    assert classes == {0, 1, 2, 3, 4}  # 1-based labels 1..5 -> one-hot columns 0..4


def test_training_is_deterministic_with_seed(records):
    directory, _ = records

    def first_batches(seed, **overrides):
        config = _config(seed=seed, deterministic=True, **overrides)
        dataset = build_dataset(str(directory / "train-*"), True, 8, SPEC, config)
        return [(images.numpy(), labels.numpy()) for images, labels in dataset.take(3)]

    for overrides in ({}, {"augment_name": "randaugment", "mixup_alpha": 0.2}):
        first, again = first_batches(3, **overrides), first_batches(3, **overrides)
        assert len(first) == len(again) == 3
        for (images, labels), (same_images, same_labels) in zip(first, again):
            np.testing.assert_array_equal(images, same_images)
            np.testing.assert_array_equal(labels, same_labels)
        assert not np.array_equal(first[0][0], first_batches(4, **overrides)[0][0])


@pytest.mark.parametrize("augment_name", ["autoaugment", "randaugment"])
def test_training_with_augmentation_and_mixing(records, augment_name):
    directory, _ = records
    config = _config(augment_name=augment_name, mixup_alpha=0.4, cutmix_alpha=1.0, seed=0,
                     dtype="bfloat16")
    dataset = build_dataset(str(directory / "train-*"), True, 8, SPEC, config)
    soft = 0
    for images, labels in dataset.take(3):
        soft += int(not set(np.unique(labels.numpy())) <= {0.0, 1.0})
        assert images.shape == (8, 32, 32, 3) and images.dtype == tf.bfloat16
        assert labels.dtype == tf.float32
        np.testing.assert_allclose(labels.numpy().sum(axis=1), np.ones(8), rtol=1e-5)
        values = tf.cast(images, tf.float32).numpy()
        low = (0 - np.array(SPEC.mean)) / np.array(SPEC.std)
        high = (255 - np.array(SPEC.mean)) / np.array(SPEC.std)
        assert (values >= low - 0.05).all() and (values <= high + 0.05).all()
    assert soft >= 1  # mixup / cutmix really mixed the labels


def test_cache_gives_the_same_eval_records(records):
    directory, labels = records
    dataset = build_dataset(str(directory / "validation-*"), False, 6, SPEC, _config(cache=True))
    seen, _ = _eval_labels(dataset)
    assert sorted(seen) == sorted(label - 1 for label in labels)
    uncached = build_dataset(str(directory / "validation-*"), False, 6, SPEC, _config())
    for _ in range(2):  # the first pass fills the cache, the second reads it
        for (images, batch_labels), (plain, plain_labels) in zip(dataset, uncached,
                                                                 strict=True):
            np.testing.assert_array_equal(images.numpy(), plain.numpy())
            np.testing.assert_array_equal(batch_labels.numpy(), plain_labels.numpy())


@pytest.mark.parametrize("is_training", [True, False])
def test_synthetic_data_shapes_and_dtypes(is_training):
    config = _config(use_synthetic_data=True, dtype="float16", num_label_classes=7)
    dataset = build_dataset(None, is_training, 4, SPEC, config)
    images, labels = next(iter(dataset))
    assert images.shape == (4, 32, 32, 3) and images.dtype == tf.float16
    if is_training:
        assert labels.shape == (4, 7) and labels.dtype == tf.float32
    else:
        assert labels.shape == (4,) and labels.dtype == tf.int32


def test_default_image_size_comes_from_the_spec():
    spec = get_spec("efficientnetv2-s")
    config = DataConfig(use_synthetic_data=True)
    train_images, _ = next(iter(build_dataset(None, True, 1, spec, config)))
    eval_images, _ = next(iter(build_dataset(None, False, 1, spec, config)))
    assert train_images.shape[1] == spec.train_size
    assert eval_images.shape[1] == spec.eval_size


def test_augment_batch_program_rounds_float_images_then_augments_each_image():
    from efficientnet.data import augment, pipeline

    rng = np.random.default_rng(5)
    # Halves included: rounding is half to even, as tf.round per image was.
    images = np.round(rng.uniform(0, 255, (4, 32, 32, 3)) * 2) / 2
    images = tf.constant(images, tf.float32)
    seeds = tf.constant(rng.integers(0, 2**31 - 1, (4, 2)), tf.int32)
    labels = tf.one_hot([0, 1, 2, 3], 4)
    config = DataConfig(augment_name="autoaugment", num_label_classes=4)
    augmented, same_labels = pipeline._augment_batch_fn(SPEC, config)(images, labels, seeds)
    pixels = tf.cast(tf.round(images), tf.uint8)
    expected = [normalize_images(tf.cast(augment.autoaugment(pixels[i], seeds[i]), tf.float32),
                                 SPEC) for i in range(4)]
    np.testing.assert_allclose(augmented.numpy(), np.stack(expected), rtol=0, atol=1e-5)
    np.testing.assert_array_equal(same_labels.numpy(), labels.numpy())
    assert not np.allclose(augmented.numpy(), normalize_images(pixels, SPEC).numpy())
