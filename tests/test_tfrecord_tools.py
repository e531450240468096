"""tfrecord_tools: folder / ImageNet / Fashion-MNIST conversion, bad files, resume, verify, CLI."""

import collections
import io
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import tfrecord_tools
from efficientnet.data import DataConfig, build_dataset
from efficientnet.models import get_spec
from tfrecord_tools.convert import FASHION_MNIST_DIR
from tfrecord_tools.example import image_example, serialize_example

HAVE_FASHION_MNIST = os.path.isfile(os.path.join(FASHION_MNIST_DIR, "t10k-labels-idx1-ubyte.gz"))
needs_fashion_mnist = pytest.mark.skipif(not HAVE_FASHION_MNIST,
                                         reason="dataset-fashion-mnist is not installed")
CLASSES = ["cat", "dog", "fish"]


def _picture(seed, size=(48, 40)):
    coarse = np.random.default_rng(seed).integers(0, 256, (3, 4, 3), dtype=np.uint8)
    return Image.fromarray(coarse).resize(size, Image.BILINEAR)


def _save(image, path, fmt, **kwargs):
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, fmt, **kwargs)
    return path


def _parse(record):
    example = tf.train.Example.FromString(record)
    return {k: (v.bytes_list.value or v.int64_list.value or v.float_list.value)
            for k, v in example.features.feature.items()}


def _records(directory, split):
    records = []
    for path in sorted(directory.glob(f"{split}-*-of-*")):
        records += [_parse(r.numpy()) for r in tf.data.TFRecordDataset(str(path))]
    return records


@pytest.fixture
def image_folder(tmp_path):
    """3 classes of good RGB JPEGs plus every kind of problem file in class 'dog'."""
    root = tmp_path / "images"
    for label, name in enumerate(CLASSES):
        for i in range(6):
            _save(_picture(10 * label + i), root / name / f"{name}{i}.jpg", "JPEG", quality=90)
    dog = root / "dog"
    problems = {
        "cmyk.jpg": ("fixed", lambda p: _save(_picture(1).convert("CMYK"), p, "JPEG")),
        "grey.jpg": ("fixed", lambda p: _save(_picture(2).convert("L"), p, "JPEG")),
        "png_named.JPEG": ("fixed", lambda p: _save(_picture(3), p, "PNG")),
        "alpha.png": ("fixed", lambda p: _save(_picture(4).convert("RGBA"), p, "PNG")),
        "palette.png": ("fixed", lambda p: _save(_picture(5).convert("P"), p, "PNG")),
        "truncated.jpg": ("corrupt or truncated", lambda p: p.write_bytes(
            _jpeg_bytes(_picture(6, (200, 160)))[:1500])),
        "empty.jpg": ("empty file", lambda p: p.write_bytes(b"")),
        "notes.txt": ("not an image", lambda p: p.write_text("not a picture")),
        "broken_link.jpg": ("unreadable", lambda p: os.symlink(tmp_path / "missing.jpg", p)),
    }
    for name, (_, make) in problems.items():
        make(dog / name)
    # Hidden files are not images of the class: ignored, not reported.
    (root / "cat" / ".DS_Store").write_bytes(b"\0\0")
    return root, {name: kind for name, (kind, _) in problems.items()}


def _jpeg_bytes(image, **kwargs):
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", **kwargs)
    return buffer.getvalue()


def test_example_serialisation_matches_tensorflow():
    features = {"a/bytes": b"\x00\xff", "a/text": "naïve", "a/int": 1234567890123,
                "a/negative": -5, "a/floats": [0.25, -1.5], "a/ints": [1, 2, 300],
                "a/empty": []}
    parsed = tf.train.Example.FromString(serialize_example(features)).features.feature
    assert parsed["a/bytes"].bytes_list.value == [b"\x00\xff"]
    assert parsed["a/text"].bytes_list.value == ["naïve".encode()]
    assert parsed["a/int"].int64_list.value == [1234567890123]
    assert parsed["a/negative"].int64_list.value == [-5]
    assert list(parsed["a/floats"].float_list.value) == [0.25, -1.5]
    assert list(parsed["a/ints"].int64_list.value) == [1, 2, 300]
    assert len(parsed["a/empty"].int64_list.value) == 0
    assert serialize_example(features) == serialize_example(dict(reversed(features.items())))


@pytest.mark.parametrize("size", [0, 1, 127, 128, 256, 257, 16383, 16384, 70000, 2_100_000])
def test_example_bytes_are_identical_to_tensorflow(size):
    """Byte for byte, with payloads around the inline limit and every varint length boundary."""
    payload = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    features = {"image/encoded": payload, "image/format": "JPEG", "image/height": 375,
                "image/class/label": 7, "image/filename": "n01440764_10026.JPEG",
                "image/object/bbox/xmin": [0.25], "image/object/bbox/label": [7]}
    feature = {
        "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[payload])),
        "image/format": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"JPEG"])),
        "image/height": tf.train.Feature(int64_list=tf.train.Int64List(value=[375])),
        "image/class/label": tf.train.Feature(int64_list=tf.train.Int64List(value=[7])),
        "image/filename": tf.train.Feature(
            bytes_list=tf.train.BytesList(value=[b"n01440764_10026.JPEG"])),
        "image/object/bbox/xmin": tf.train.Feature(float_list=tf.train.FloatList(value=[0.25])),
        "image/object/bbox/label": tf.train.Feature(int64_list=tf.train.Int64List(value=[7])),
    }
    expected = tf.train.Example(features=tf.train.Features(feature=feature))
    assert serialize_example(features) == expected.SerializeToString(deterministic=True)


def test_folder_round_trip_with_bad_files(image_folder, tmp_path):
    root, problems = image_folder
    output = tmp_path / "records"
    report = tfrecord_tools.convert_folder(str(root), str(output), validation_fraction=0.34,
                                           train_shards=3, validation_shards=2, num_workers=1,
                                           quiet=True)
    bad = {n for n, kind in problems.items() if kind != "fixed"}
    fixed = {n for n, kind in problems.items() if kind == "fixed"}
    total = 18 + len(fixed)
    assert report["written"]["train"] + report["written"]["validation"] == total
    # round(0.34 * n) of each class (cat 6, dog 6 + 9 problem files, fish 6) go to validation.
    assert report["written"]["validation"] + sum(
        1 for s in report["skipped"] if s["split"] == "validation") == 2 + 5 + 2
    assert report["reencoded"] == len(fixed)
    skipped = {os.path.basename(s["path"]): s["reason"] for s in report["skipped"]}
    assert set(skipped) == bad
    for name, reason in skipped.items():
        assert reason.startswith(problems[name]), (name, reason)
    assert sorted(os.listdir(output)) == sorted([
        ".tfrecord_tools.lock", ".tfrecord_tools_state.json", "conversion_report.json", "labels.txt",
        "train-00000-of-00003", "train-00001-of-00003", "train-00002-of-00003",
        "validation-00000-of-00002", "validation-00001-of-00002"])
    assert (output / "labels.txt").read_text() == "cat\ndog\nfish\n"
    on_disk = json.loads((output / "conversion_report.json").read_text())
    assert on_disk["written"] == report["written"] and len(on_disk["skipped"]) == len(bad)

    records = _records(output, "train") + _records(output, "validation")
    assert len(records) == total
    by_name = {os.path.basename(r["image/filename"][0].decode()): r for r in records}
    assert set(by_name) == {f"{c}{i}.jpg" for c in CLASSES for i in range(6)} | fixed
    for record in by_name.values():
        label = record["image/class/label"][0]
        assert CLASSES[label - 1] == record["image/class/synset"][0].decode()
        assert record["image/format"] == [b"JPEG"] and record["image/colorspace"] == [b"RGB"]
        assert record["image/channels"] == [3]
        image = tf.io.decode_jpeg(record["image/encoded"][0])
        assert image.shape.as_list() == [record["image/height"][0], record["image/width"][0], 3]
    # RGB JPEGs are stored byte for byte; the others are re-encoded JPEGs.
    assert by_name["cat0.jpg"]["image/encoded"][0] == (root / "cat" / "cat0.jpg").read_bytes()
    for name in fixed:
        assert tf.io.is_jpeg(by_name[name]["image/encoded"][0])
        assert by_name[name]["image/class/label"] == [2]
    cmyk = tf.io.decode_jpeg(by_name["cmyk.jpg"]["image/encoded"][0]).numpy().astype(int)
    assert np.abs(cmyk - np.asarray(_picture(1))).mean() < 8

    verified = tfrecord_tools.verify(str(output), quiet=True)
    assert verified["ok"] and not verified["errors"]
    assert verified["splits"]["train"]["records"] == report["written"]["train"]
    histogram = collections.Counter(r["image/class/label"][0] for r in records)
    combined = collections.Counter(verified["splits"]["train"]["classes"])
    combined.update(verified["splits"]["validation"]["classes"])
    assert combined == histogram

    spec = get_spec("efficientnet-b0")
    config = DataConfig(image_size=32, num_label_classes=3)
    labels = []
    for split in ("train", "validation"):
        for images, batch in build_dataset(str(output / f"{split}-*"), False, 4, spec, config):
            assert images.shape[1:] == (32, 32, 3) and images.dtype == tf.float32
            labels += batch.numpy().tolist()
    assert collections.Counter(labels) == collections.Counter(
        {label - 1: n for label, n in histogram.items()})
    images, one_hot = next(iter(build_dataset(str(output / "train-*"), True, 5, spec, config)))
    assert images.shape == (5, 32, 32, 3) and one_hot.shape == (5, 3)


def test_folder_with_validation_directory_and_same_output_for_same_seed(tmp_path):
    root, validation = tmp_path / "train", tmp_path / "val"
    for label, name in enumerate(CLASSES):
        for i in range(4):
            _save(_picture(label * 7 + i), root / name / f"{i}.jpg", "JPEG")
        _save(_picture(100 + label), validation / name / "v.jpg", "JPEG")
    outputs = []
    # The second run decodes every image fully: the same records as the fast header check.
    for run, (seed, full_decode) in enumerate(((5, False), (5, True), (6, False))):
        output = tmp_path / f"out{run}"
        report = tfrecord_tools.convert_folder(str(root), str(output), str(validation),
                                               train_shards=2, num_workers=1, seed=seed,
                                               quiet=True, full_decode=full_decode)
        assert report["written"] == {"train": 12, "validation": 3}
        outputs.append((output / "train-00000-of-00002").read_bytes())
    assert outputs[0] == outputs[1] and outputs[0] != outputs[2]


def test_tfrecord_framing_is_byte_identical_to_tensorflow(tmp_path):
    from tfrecord_tools.tfrecord import TFRecordWriter
    records = [b"", b"x", bytes(range(256)) * 300, serialize_example({"a": 1, "b": b"\xff"})]
    with TFRecordWriter(str(tmp_path / "ours")) as writer:
        for record in records:
            writer.write(record)
    with tf.io.TFRecordWriter(str(tmp_path / "tf")) as writer:
        for record in records:
            writer.write(record)
    assert (tmp_path / "ours").read_bytes() == (tmp_path / "tf").read_bytes()
    read = [r.numpy() for r in tf.data.TFRecordDataset(str(tmp_path / "ours"))]
    assert read == records


def test_jpeg_frame_header_agrees_with_pil():
    from tfrecord_tools.images import jpeg_frame
    rng = np.random.default_rng(4)
    exif = Image.Exif()
    exif[0x010F] = "camera"
    cases = [("RGB", {}), ("RGB", {"progressive": True}), ("RGB", {"exif": exif.tobytes()}),
             ("RGB", {"icc_profile": b"\0" * 70000}),  # an ICC profile split over APP2s
             ("L", {}), ("CMYK", {})]
    for mode, options in cases:
        height, width = int(rng.integers(1, 90)), int(rng.integers(1, 90))
        image = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
        data = _jpeg_bytes(image.convert(mode), **options)
        opened = Image.open(io.BytesIO(data))
        channels = {"RGB": 3, "L": 1, "CMYK": 4}[opened.mode]
        assert jpeg_frame(data) == (opened.size[1], opened.size[0], channels), (mode, options)
    data = _jpeg_bytes(_picture(1))
    sof = data.index(b"\xff\xc0")
    assert jpeg_frame(data[:sof + 6]) is None  # header cut inside the frame segment
    assert jpeg_frame(data[:sof] + b"\x00" + data[sof + 1:]) is None  # not a marker
    twelve_bit = data[:sof + 4] + b"\x0c" + data[sof + 5:]
    assert jpeg_frame(twelve_bit) is None


def test_interrupt_right_after_a_rename_keeps_that_shard(tmp_path, monkeypatch):
    """A kill between a shard's rename and the next line must not make a resume redo it."""
    from tfrecord_tools import writer
    root = tmp_path / "train"
    for label, name in enumerate(CLASSES):
        for i in range(4):
            _save(_picture(label * 7 + i), root / name / f"{i}.jpg", "JPEG")
    output = tmp_path / "out"
    rename = os.replace

    def rename_then_die(source, target):
        rename(source, target)
        if os.path.basename(target) == "train-00001-of-00003":
            raise KeyboardInterrupt  # what Ctrl-C / SIGKILL right after the rename looks like

    monkeypatch.setattr(writer.os, "replace", rename_then_die)
    with pytest.raises(KeyboardInterrupt):
        tfrecord_tools.convert_folder(str(root), str(output), validation_fraction=0,
                                      train_shards=3, num_workers=1, seed=1, quiet=True)
    monkeypatch.setattr(writer.os, "replace", rename)
    kept = {name: (output / name).stat().st_mtime_ns
            for name in ("train-00000-of-00003", "train-00001-of-00003")}
    assert not (output / "train-00002-of-00003").exists()
    time.sleep(0.01)
    report = tfrecord_tools.convert_folder(str(root), str(output), validation_fraction=0,
                                           train_shards=3, num_workers=1, seed=1, quiet=True)
    assert report["written"] == {"train": 12}
    for name, mtime in kept.items():
        assert (output / name).stat().st_mtime_ns == mtime, f"{name} was rewritten"
    assert len(_records(output, "train")) == 12


def _imagenet_tree(tmp_path):
    synsets = ["n02000002", "n01000001"]  # labels_file order, not sorted order
    train, val = tmp_path / "train", tmp_path / "val"
    for s, synset in enumerate(synsets):
        for i in range(3):
            _save(_picture(s * 10 + i), train / synset / f"{synset}_{i}.JPEG", "JPEG")
    truth = []
    for i in range(4):
        _save(_picture(50 + i), val / f"ILSVRC2012_val_{i:08d}.JPEG", "JPEG")
        truth.append(synsets[i % 2])
    files = {
        "labels": "\n".join(synsets) + "\n",
        "metadata": "n01000001\tfirst thing, thing one\nn02000002\tsecond thing\nn0999\tunused\n",
        "boxes": "n02000002_1.JPEG,0.1,0.2,0.5,0.9\nn02000002_1.JPEG,0.0,0.0,1.0,1.0\n",
        "truth": "\n".join(truth) + "\n",
    }
    for name, text in files.items():
        (tmp_path / f"{name}.txt").write_text(text)
    return train, val, synsets


def test_imagenet_layout_labels_text_and_boxes(tmp_path):
    train, val, synsets = _imagenet_tree(tmp_path)
    output = tmp_path / "out"
    report = tfrecord_tools.convert_imagenet(
        str(train), str(val), str(output), str(tmp_path / "labels.txt"),
        str(tmp_path / "metadata.txt"), str(tmp_path / "boxes.txt"),
        str(tmp_path / "truth.txt"), train_shards=2, validation_shards=1, num_workers=1,
        quiet=True)
    assert report["written"] == {"train": 6, "validation": 4}
    assert (output / "labels.txt").read_text() == \
        "n02000002\tsecond thing\nn01000001\tfirst thing, thing one\n"
    records = {r["image/filename"][0].decode(): r for r in _records(output, "train")}
    first = records[os.path.join("n02000002", "n02000002_1.JPEG")]
    assert first["image/class/label"] == [1]
    assert first["image/class/synset"] == [b"n02000002"]
    assert first["image/class/text"] == [b"second thing"]
    np.testing.assert_allclose(first["image/object/bbox/xmin"], [0.1, 0.0])
    np.testing.assert_allclose(first["image/object/bbox/ymax"], [0.9, 1.0])
    assert records[os.path.join("n01000001", "n01000001_0.JPEG")]["image/class/label"] == [2]
    validation = {r["image/filename"][0].decode(): r["image/class/label"][0]
                  for r in _records(output, "validation")}
    assert validation == {f"ILSVRC2012_val_{i:08d}.JPEG": 1 + i % 2 for i in range(4)}


def _cli(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "tfrecord_tools", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)


def test_bad_arguments_exit_2_with_one_message_and_write_nothing(tmp_path):
    images = tmp_path / "images"
    _save(_picture(0), images / "a" / "0.jpg", "JPEG")
    _save(_picture(1), images / "a" / "1.jpg", "JPEG")
    (images / "empty_class").mkdir()
    output = tmp_path / "out"
    cases = [
        (["folder", "--input_directory", tmp_path / "nope", "--output_directory", output],
         "--input_directory .*nope does not exist"),
        (["folder", "--input_directory", images, "--output_directory", output],
         "Class folder .*empty_class is empty"),
        (["folder", "--output_directory", output], "required: --input_directory"),
        (["folder", "--input_directory", images, "--output_directory", output,
          "--train_shards", "0"], "--train_shards: must be at least 1"),
        (["fashion-mnist", "--output_directory", output, "--source_directory", tmp_path],
         "apt-get install dataset-fashion-mnist"),
        (["verify", tmp_path / "nope"], "does not exist"),
    ]
    for args, message in cases:
        result = _cli(*args)
        assert result.returncode == 2, (args, result.stderr)
        lines = [line for line in result.stderr.splitlines()
                 if not line.startswith(("usage", " "))]
        assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
        assert re.search(message, lines[0]), (message, lines[0])
        assert not output.exists()
    (images / "empty_class").rmdir()
    with pytest.raises(tfrecord_tools.UsageError, match="--train_shards=4 is more than the 2"):
        tfrecord_tools.convert_folder(str(images), str(output), validation_fraction=0,
                                      train_shards=4, quiet=True)
    assert not output.exists()


def test_help_describes_every_flag():
    for command in ("folder", "imagenet", "fashion-mnist", "verify"):
        result = _cli(command, "--help")
        assert result.returncode == 0
        parser = __import__("tfrecord_tools.__main__", fromlist=["build_parser"]).build_parser()
        sub = parser._subparsers._group_actions[0].choices[command]
        for action in sub._actions:
            if action.option_strings and action.dest != "help":
                assert action.help, (command, action.dest)
                assert action.option_strings[0] in result.stdout


def test_refuses_to_mix_with_other_shards(tmp_path):
    images = tmp_path / "images"
    for i in range(4):
        _save(_picture(i), images / "a" / f"{i}.jpg", "JPEG")
    output = tmp_path / "out"
    tfrecord_tools.convert_folder(str(images), str(output), validation_fraction=0,
                                  train_shards=2, num_workers=1, quiet=True)
    with pytest.raises(tfrecord_tools.UsageError, match="already holds other shards"):
        tfrecord_tools.convert_folder(str(images), str(output), validation_fraction=0,
                                      train_shards=3, num_workers=1, quiet=True)
    with pytest.raises(tfrecord_tools.UsageError, match="different conversion"):
        tfrecord_tools.convert_folder(str(images), str(output), validation_fraction=0,
                                      train_shards=2, num_workers=1, seed=9, quiet=True)


def _write_raw(path, records):
    with tf.io.TFRecordWriter(str(path)) as writer:
        for record in records:
            writer.write(record)


def test_verify_names_shard_and_record_of_bad_records(tmp_path):
    good = _jpeg_bytes(_picture(0))
    png = io.BytesIO()
    _picture(1).save(png, "PNG")
    _write_raw(tmp_path / "train-00000-of-00002", [
        image_example(good, 40, 48, 1),
        serialize_example({"image/class/label": 1}),  # no image
        image_example(b"\xff\xd8\xffgarbage", 40, 48, 1),  # does not decode
        image_example(png.getvalue(), 40, 48, 2),  # PNG claiming to be JPEG
        image_example(good, 41, 48, 2),  # wrong height
        image_example(good, 40, 48, 2),
    ])
    _write_raw(tmp_path / "validation-00000-of-00001", [image_example(good, 40, 48, 1)] * 3)
    corrupt = tmp_path / "validation-00000-of-00001"
    data = bytearray(corrupt.read_bytes())
    data[-20] ^= 0xFF  # a flipped bit in the last record's image bytes: CRC mismatch
    corrupt.write_bytes(bytes(data))

    report = tfrecord_tools.verify(str(tmp_path), quiet=True)
    assert not report["ok"]
    errors = {(os.path.basename(e["shard"]), e["record"]): e["reason"] for e in report["errors"]}
    assert errors.pop(("train-00000-of-00002", 1)) == "no image/encoded feature"
    assert errors.pop(("train-00000-of-00002", 2)).startswith("image/encoded does not decode")
    assert errors.pop(("train-00000-of-00002", 3)).startswith("image/format does not match")
    assert errors.pop(("train-00000-of-00002", 4)).startswith("image/height or image/width")
    assert errors.pop(("train-00001-of-00002", None)) == "shard missing"
    assert errors.pop(("validation-00000-of-00001", 2)).startswith("corrupt TFRecord data")
    assert not errors
    assert report["splits"]["train"]["classes"] == {1: 1, 2: 1}
    assert report["splits"]["validation"]["records"] == 2

    result = _cli("verify", tmp_path, "--quiet")
    assert result.returncode == 1
    assert "BAD " + str(tmp_path / "train-00000-of-00002") + " record 1: no image/encoded" \
        in result.stdout


@needs_fashion_mnist
def test_fashion_mnist_subset_parallel_equals_serial(tmp_path):
    kwargs = {"train_limit": 300, "validation_limit": 100, "train_shards": 3, "seed": 1,
              "quiet": True}
    serial = tfrecord_tools.convert_fashion_mnist(str(tmp_path / "a"), num_workers=1, **kwargs)
    parallel = tfrecord_tools.convert_fashion_mnist(str(tmp_path / "b"), num_workers=2, **kwargs)
    assert serial["written"] == parallel["written"] == {"train": 300, "validation": 100}
    for name in ("train-00000-of-00003", "train-00002-of-00003", "validation-00000-of-00001"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    record = _records(tmp_path / "a", "validation")[0]
    image = tf.io.decode_jpeg(record["image/encoded"][0]).numpy()
    assert image.shape == (28, 28, 3)
    np.testing.assert_array_equal(image[..., 0], image[..., 2])
    assert (tmp_path / "a" / "labels.txt").read_text().splitlines()[0] == "T-shirt/top"


@needs_fashion_mnist
@pytest.mark.slow
def test_kill_and_resume_gives_identical_files(tmp_path):
    args = ["fashion-mnist", "--train_limit", "20000", "--validation_limit", "1000",
            "--train_shards", "20", "--num_workers", "2", "--seed", "3"]
    killed = tmp_path / "killed"
    process = subprocess.Popen([sys.executable, "-m", "tfrecord_tools", *args,
                                "--output_directory", str(killed)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (killed / "train-00002-of-00020").exists() and process.poll() is None:
        assert time.time() < deadline
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    complete = {p.name for p in killed.glob("train-*")}
    assert 3 <= len(complete) < 20, "the conversion finished before it could be interrupted"
    mtimes = {name: (killed / name).stat().st_mtime_ns for name in complete}

    result = _cli(*args, "--output_directory", killed)
    assert result.returncode == 0, result.stderr
    assert "Resuming:" in result.stderr
    fresh = tmp_path / "fresh"
    tfrecord_tools.convert_fashion_mnist(str(fresh), train_limit=20000, validation_limit=1000,
                                         train_shards=20, num_workers=1, seed=3, quiet=True)
    names = sorted(p.name for p in fresh.glob("*-of-*"))
    assert names == sorted(p.name for p in killed.glob("*-of-*"))
    assert not list(killed.glob(".*.incomplete"))
    for name in names:
        assert (fresh / name).read_bytes() == (killed / name).read_bytes(), name
    for name, mtime in mtimes.items():  # complete shards were kept, not rewritten
        assert (killed / name).stat().st_mtime_ns == mtime
    report = json.loads((killed / "conversion_report.json").read_text())
    assert report["written"] == {"train": 20000, "validation": 1000}
