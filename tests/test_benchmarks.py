"""The benchmark harness: results files, README table, GPU record parsing, accuracy subsets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks import accuracy, common, gpu_jax

ROOT = Path(__file__).resolve().parents[1]
FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture
def results_dir(tmp_path, monkeypatch):
    results = tmp_path / "results"
    readme = tmp_path / "README.md"
    readme.write_text(f"# Benchmarks\n\nintro\n\n{common.TABLE_START}\nold row\n"
                      f"{common.TABLE_END}\n\nafter\n")
    monkeypatch.setattr(common, "RESULTS_DIR", results)
    monkeypatch.setattr(common, "README", readme)
    return results


def test_write_result_adds_machine_info_and_readme_table_is_regenerated(results_dir):
    path = common.write_result("train", {"summary": ["ours 2.0 img/s"], "ratio": 1.5})
    payload = json.loads(path.read_text())
    assert payload["benchmark"] == "train" and payload["ratio"] == 1.5
    assert payload["machine"]["cpu_count"] >= 1 and "keras" in payload["machine"]
    assert payload["machine"]["commit"] == common.code_commit()
    assert payload["machine"]["tensorflow_onednn"] is common.onednn_enabled()
    assert payload["machine"]["memory_copy_gb_per_s"] > 0
    common.update_readme()
    text = common.README.read_text()
    assert "old row" not in text
    assert f"| train | ours 2.0 img/s | {payload['machine']['date']} |" in text
    assert text.startswith("# Benchmarks\n\nintro\n") and text.endswith("\n\nafter\n")


def test_code_commit_names_the_checkout_and_marks_local_changes(tmp_path, monkeypatch):
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                          capture_output=True, text=True)
    if head.returncode != 0:
        assert common.code_commit() is None
        return
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                            ".", ":(exclude)benchmarks/results", ":(exclude)benchmarks/README.md"],
                           cwd=ROOT, capture_output=True, text=True).stdout.strip()
    assert common.code_commit() == head.stdout.strip() + ("+dirty" if dirty else "")
    monkeypatch.setattr(common, "__file__", str(tmp_path / "benchmarks" / "common.py"))
    assert common.code_commit() is None  # not a git checkout


def _speed_rows():
    base = {"batch": 128, "size": 224, "model": "efficientnet-b0", "compile_s": 1.0}
    return [
        {**base, "framework": "keras-jax", "precision": "mixed_bfloat16",
         "images_per_sec": 300.0, "loss": float("nan"), "jax": "0.11.2"},
        {**base, "framework": "keras-jax", "precision": "float32", "images_per_sec": 240.0,
         "loss": 6.9},
        {**base, "framework": "timm-torch", "timm_model": "efficientnet_b0",
         "precision": "autocast-bfloat16", "images_per_sec": 200.0, "loss": 6.8,
         "torch": "2.11.0"},
    ]


def test_gpu_record_ratios_nan_flag_and_probes(results_dir, tmp_path):
    speed = tmp_path / "speed.json"
    # json writes NaN as the bare token NaN, which json.loads reads back as float("nan").
    speed.write_text(json.dumps(_speed_rows()))
    probes = tmp_path / "probes"
    probes.mkdir()
    lines = [{"settings": {"epochs": 3, "optimizer": "rmsprop"}},
             {"epoch": 1, "train_loss": 2.0, "top_1": 0.5, "seconds": 1.0},
             {"epoch": 2, "train_loss": 1.5, "top_1": 0.75, "seconds": 2.0}]
    (probes / "fm_rms48_b64.jsonl").write_text("\n".join(map(json.dumps, lines)) + "\n")

    result = gpu_jax.record([str(speed)], str(probes), "Test GPU")

    assert result["summary"] == [
        "GPU efficientnet-b0 224px bs128: ours (Keras on JAX, mixed_bfloat16) 300 img/s vs timm "
        "efficientnet_b0 AMP bf16 200 img/s (1.50x) -- loss went NaN, figure not valid",
        "GPU efficientnet-b0 224px bs128: ours (Keras on JAX, float32) 240 img/s vs timm "
        "efficientnet_b0 AMP bf16 200 img/s (1.20x)",
        "Fashion-MNIST probe rms48_b64: efficientnet-b0 48px bs64 TF1 RMSprop recipe, 2 of 3 "
        "epochs: top-1 75.00% (no EMA)",
    ]
    probe = result["fashion_probes"]["rms48_b64"]
    assert (probe["image_size"], probe["batch"], probe["best_top_1"]) == (48, 64, 0.75)
    written = json.loads((results_dir / "gpu.json").read_text())
    assert written["machine"]["device"] == "Test GPU"
    assert written["machine"]["torch"] == "2.11.0" and written["machine"]["jax"] == "0.11.2"
    assert "| gpu | GPU efficientnet-b0 224px bs128: ours (Keras on JAX, float32)" in (
        common.README.read_text())


@pytest.mark.skipif(not FASHION.is_dir(), reason="needs the dataset-fashion-mnist package "
                    "(make install adds it)")
def test_gpu_fashion_loader_reads_the_debian_package():
    train_x, train_y, test_x, test_y = gpu_jax.load_fashion_mnist(str(FASHION))
    assert train_x.shape == (60000, 28, 28) and test_x.shape == (10000, 28, 28)
    assert sorted(set(train_y.tolist())) == list(range(10))
    assert [int((test_y == c).sum()) for c in range(10)] == [1000] * 10


def _write_records(path: Path, labels: list[int]) -> None:
    import tensorflow as tf

    with tf.io.TFRecordWriter(str(path)) as writer:
        for index, label in enumerate(labels):
            feature = {
                "image/class/label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
                "image/filename": tf.train.Feature(
                    bytes_list=tf.train.BytesList(value=[f"{index}.jpg".encode()])),
            }
            writer.write(tf.train.Example(
                features=tf.train.Features(feature=feature)).SerializeToString())


def test_accuracy_subset_keeps_chosen_classes_relabelled_from_one(tmp_path):
    import tensorflow as tf

    source = tmp_path / "all"
    source.mkdir()
    # 1-based labels as tfrecord_tools writes them: 0-based class c is label c + 1.
    _write_records(source / "train-00000-of-00001", [1, 6, 7, 2, 10, 6])
    _write_records(source / "validation-00000-of-00001", [6, 1, 8])
    (source / "labels.txt").write_text("\n".join(f"class{c}" for c in range(10)) + "\n")

    written = accuracy.write_subset(source, tmp_path / "sub", [5, 6, 7, 8, 9])

    assert written == 4
    labels = [tf.train.Example.FromString(r.numpy()).features.feature[
        "image/class/label"].int64_list.value[0]
        for r in tf.data.TFRecordDataset(str(tmp_path / "sub" / "train-00000-of-00001"))]
    assert labels == [1, 2, 5, 1]
    assert (tmp_path / "sub" / "labels.txt").read_text().splitlines() == [
        "class5", "class6", "class7", "class8", "class9"]
    # A second call reuses the finished subset.
    assert accuracy.write_subset(source, tmp_path / "sub", [5, 6, 7, 8, 9]) == 4


def test_accuracy_summary_reads_each_part_and_the_old_layout():
    scratch = {"final": {"top_1_accuracy": 0.92345}, "wall_seconds": 4500.0,
               "settings": {"image_size": 48, "epochs": 10, "batch": 128, "min_crop_area": 1.0}}
    transfer = {"transfer_epochs": 2.0,
                "finetune_5_9_restored": {"final": {"top_1_accuracy": 0.6548},
                                          "curve": [[78, 0.3], [468, 0.6548]]},
                "finetune_5_9_scratch": {"final": {"top_1_accuracy": 0.4312},
                                         "curve": [[78, 0.2], [468, 0.4312]]}}
    machine = {"machine": {"cpu_count": 2}}
    assert accuracy.summarize({**machine, "scratch_10_classes": scratch, **transfer}) == [
        "Fashion-MNIST efficientnet-b0 @48px from scratch, 10 epochs: top-1 92.34% on 10,000 "
        "images (75.0 min on 2 cores)",
        "transfer 0-4 -> 5-9 (2 epochs each, 468 fine-tune steps): restored 65.48% vs scratch "
        "43.12% top-1"]
    assert len(accuracy.summarize({**machine, **transfer})) == 1
    precise = {**transfer, "transfer_settings": {"precise_bn_batches": 20}}
    assert accuracy.summarize({**machine, **precise})[0].endswith(
        "43.12% top-1 (precise BN over 20 batches)")
    # Results written before per-part settings kept image_size and epochs at the top level.
    old = {k: v for k, v in scratch.items() if k != "settings"}
    assert accuracy.summarize({**machine, "image_size": 32, "epochs": 9,
                               "scratch_10_classes": old})[0].startswith(
        "Fashion-MNIST efficientnet-b0 @32px from scratch, 9 epochs: top-1 92.34%")


@pytest.mark.parametrize("module", ["benchmarks", "benchmarks.accuracy", "benchmarks.gpu_jax",
                                    "benchmarks.torch_peers"])
def test_benchmark_commands_have_help(module):
    proc = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True,
                          text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "usage:" in proc.stdout


def test_step_profile_groups_op_types_by_kind_and_direction():
    from benchmarks import train_speed

    kind, direction = train_speed.op_kind, train_speed.op_direction
    assert kind("_MklNativeDepthwiseConv2dNativeBackpropFilter") == "depthwise conv"
    assert kind("DepthwiseConv2dNative") == "depthwise conv"
    assert kind("_MklNativeFusedConv2D") == kind("Conv2DBackpropInput") == \
        "conv (1x1, stem, SE, head)"
    assert kind("FusedBatchNormGradV3") == "batch norm"
    assert kind("_MklSwish") == kind("SigmoidGrad") == "swish / sigmoid"
    assert kind("ResourceApplyGradientDescent") == "other"
    assert direction("model/block1a_se_excite/Mul", "Mul") == "forward"
    assert direction("gradient_tape/model/block1a_se_excite/Mul", "Mul") == "backward"
    assert direction("while/body/_1/gradient_tape/model/stem_conv/Conv2D", "Conv2D") == \
        "backward"
    assert direction("Conv2DBackpropFilter", "Conv2DBackpropFilter") == "backward"
    grouped = train_speed.group_op_seconds({
        "FusedBatchNormV3": {"forward": 1.5, "backward": 0.0},
        "_MklNativeFusedBatchNormGradV3": {"forward": 0.0, "backward": 2.0},
        "Conv2D": {"forward": 0.25, "backward": 0.0},
        "_MklNativeConv2DBackpropFilter": {"forward": 0.0, "backward": 0.5},
        "Conv2DBackpropInput": {"forward": 0.0, "backward": 0.75},
        "Mul": {"forward": 0.125, "backward": 0.375}})
    assert grouped == {"batch norm": {"forward": 1.5, "backward": 2.0},
                       "conv (1x1, stem, SE, head)": {"forward": 0.25, "backward": 1.25},
                       "elementwise (SE scale, residual, drop-connect)":
                           {"forward": 0.125, "backward": 0.375}}


def test_op_seconds_come_from_a_real_tensorflow_profile(tmp_path):
    import tensorflow as tf

    from benchmarks import train_speed

    kernel = tf.Variable(tf.random.normal([3, 3, 4, 8], seed=1))
    images = tf.random.normal([2, 16, 16, 4], seed=2)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.nn.conv2d(images, kernel, 1, "SAME") ** 2)
        return tape.gradient(loss, kernel)

    step()
    tf.profiler.experimental.start(str(tmp_path))
    step().numpy()
    tf.profiler.experimental.stop()
    seconds = train_speed.op_seconds_from_trace(str(tmp_path))
    kinds = train_speed.group_op_seconds(seconds)
    conv = kinds["conv (1x1, stem, SE, head)"]
    assert conv["forward"] > 0 and conv["backward"] > 0, seconds
    assert any("Conv2DBackpropFilter" in op for op in seconds), seconds
    assert seconds["Mul"]["backward"] > 0, seconds  # the gradient of `** 2`, by node name
    with pytest.raises(FileNotFoundError, match="no \\*.xplane.pb profile under"):
        train_speed.op_seconds_from_trace(str(tmp_path / "empty"))


def test_cpu_simd_reads_the_flags_line():
    from benchmarks import common

    text = ("processor\t: 0\nmodel name\t: AMD EPYC\n"
            "flags\t\t: fpu sse2 avx fma avx2 avx512f avx512_vnni avx512bw\n\n"
            "processor\t: 1\nflags\t\t: fpu sse2 avx fma avx2 avx512f avx512_vnni\n")
    assert common.cpu_simd(text) == ["avx", "avx2", "fma", "avx512f", "avx512_vnni"]
    assert common.cpu_simd("processor : 0\nFeatures : fp asimd evtstrm\n") == ["asimd"]
    assert common.cpu_simd("") == []
    assert set(common.cpu_simd()) <= set(common.SIMD_FLAGS)


def test_keras_applications_peer_normalises_its_input_like_a_deployed_model():
    """weights=None leaves keras.applications' Normalization at mean 0 / variance 1, which the
    TFLite converter drops: the latency peer would skip work that every deployment runs."""
    import keras

    from benchmarks import latency

    model = keras.applications.EfficientNetB0(weights=None, input_shape=(32, 32, 3))
    latency._imagenet_normalization(model)
    pixels = np.random.default_rng(0).uniform(0, 255, (1, 4, 4, 3)).astype("float32")
    layer = next(layer for layer in model.layers if type(layer).__name__ == "Normalization")
    expected = (pixels / 255 - np.array(latency.IMAGENET_MEAN)) / np.sqrt(
        latency.IMAGENET_VARIANCE)
    np.testing.assert_allclose(np.asarray(layer(pixels / 255)), expected, rtol=1e-5, atol=1e-6)


def test_expected_op_cost_weights_each_op_by_how_often_a_policy_applies_it():
    from benchmarks.input_pipeline import expected_op_cost
    from efficientnet.data import augment

    ones = expected_op_cost({name: 1.0 for name in augment.OP_NAMES})
    # AutoAugment v0: its 50 op probabilities sum to 29.8, over 25 sub-policies; RandAugment
    # applies 2 ops at every image.
    assert ones["autoaugment"] == pytest.approx(29.8 / 25)
    assert ones["randaugment"] == pytest.approx(2.0)
    assert sum(ones["autoaugment_share"].values()) == pytest.approx(1.0)
    only_equalize = expected_op_cost({name: float(name == "Equalize") for name in augment.OP_NAMES},
                                     num_layers=3)
    assert only_equalize["autoaugment"] == pytest.approx(8.0 / 25)  # Equalize: 8.0 of 29.8
    assert only_equalize["randaugment"] == pytest.approx(3 / 16)  # one of 16 ops, 3 layers
    assert only_equalize["autoaugment_share"]["Equalize"] == pytest.approx(1.0)
    assert only_equalize["autoaugment_share"]["Rotate"] == 0.0


def test_forced_op_programs_apply_exactly_that_op_to_every_image():
    import tensorflow as tf

    from benchmarks.input_pipeline import IDENTITY_OP, forced_op_batch_fn, smooth_images
    from efficientnet.data import augment

    images = smooth_images(3, size=24)
    assert images.shape == (3, 24, 24, 3) and images.dtype == np.uint8
    seeds = tf.constant([[1, 2], [3, 4], [5, 6]], tf.int32)
    np.testing.assert_array_equal(forced_op_batch_fn(IDENTITY_OP)(images, seeds), images)
    np.testing.assert_array_equal(forced_op_batch_fn("Invert")(images, seeds), 255 - images)
    equalized = forced_op_batch_fn("Equalize")(images, seeds).numpy()
    for image, expected in zip(images, equalized):
        np.testing.assert_array_equal(augment.equalize(tf.constant(image)), expected)
    assert not np.array_equal(equalized, images)


def test_photo_like_jpegs_are_encoded_as_imagenet_ones_and_light_ones_as_before(tmp_path):
    """`--compare_jpegs`' second kind: 500x375 RGB, quality-96 4:4:4 JPEGs of ~112 KB (ImageNet
    ~110 KB); the default kind keeps the committed runs' smooth quality-90 4:2:0 pictures."""
    from PIL import Image

    from benchmarks import input_pipeline

    photo = input_pipeline.make_images(str(tmp_path / "photo"), 6, kind="photo")
    light = input_pipeline.make_images(str(tmp_path / "light"), 6)
    for paths, low, high, sampling in ((photo, 95e3, 130e3, (1, 1, 1, 1, 1, 1)),
                                       (light, 35e3, 60e3, (2, 2, 1, 1, 1, 1))):
        sizes = [Path(p).stat().st_size for p in paths]
        assert low < np.mean(sizes) < high, sizes
        with Image.open(paths[0]) as image:
            assert (image.size, image.mode) == ((500, 375), "RGB")
            factors = tuple(f for _, h, v, _ in image.layer for f in (h, v))
            assert factors == sampling, factors


def test_interleaved_rounds_alternate_contenders_and_paired_cost_compares_within_a_round(
        monkeypatch):
    from benchmarks import input_pipeline

    readings = iter([100.0, 95.0, 50.0, 45.0, 120.0, 90.0])  # plain, aa; plain, aa; ...
    calls = []

    def fake_reading(pattern, augment_name, batches):
        calls.append((pattern, augment_name, batches))
        rate = next(readings)
        return rate, 1000.0 / rate  # CPU ms per image

    monkeypatch.setattr(input_pipeline, "pipeline_reading", fake_reading)
    result = input_pipeline.interleaved_rounds(
        {"plain": ("p", None), "aa": ("p", "autoaugment")}, batches=7, rounds=3)
    assert calls == [("p", None, 7), ("p", "autoaugment", 7)] * 3
    rates = result["images_per_sec"]
    assert rates == {"plain": [100.0, 50.0, 120.0], "aa": [95.0, 45.0, 90.0]}
    assert result["cpu_ms_per_image"]["plain"] == [10.0, 20.0, 1000.0 / 120.0]
    # Paired costs 0.05, 0.10, 0.25: median 0.10. The best-of-each ratio, 1 - 95 / 120 = 0.21,
    # pairs the plain reading of the third round with the augmented reading of the first.
    assert input_pipeline.paired_cost(rates, "aa", "plain") == pytest.approx(0.10)


def test_linked_copies_repeat_every_file_in_its_class_folder_and_paired_ratio_is_per_round(
        tmp_path):
    from benchmarks import input_pipeline

    source = tmp_path / "images"
    for folder, name, data in (("class0", "a.jpg", b"first"), ("class1", "b.jpg", b"second"),
                               ("class1", "c.jpg", b"third")):
        (source / folder).mkdir(parents=True, exist_ok=True)
        (source / folder / name).write_bytes(data)
    paths = input_pipeline.linked_copies(str(source), str(tmp_path / "linked"), copies=3)
    relative = sorted(os.path.relpath(p, tmp_path / "linked") for p in paths)
    assert relative == sorted(f"{folder}/{copy}_{name}" for copy in range(3) for folder, name in (
        ("class0", "a.jpg"), ("class1", "b.jpg"), ("class1", "c.jpg")))
    assert (tmp_path / "linked" / "class1" / "2_c.jpg").read_bytes() == b"third"
    assert os.stat(source / "class0" / "a.jpg").st_nlink == 4  # hard links, not copies

    rates = {"ours": [1000.0, 600.0, 900.0], "baseline": [100.0, 50.0, 100.0]}  # 10, 12, 9x
    assert input_pipeline.paired_ratio(rates, "ours", "baseline") == pytest.approx(10.0)


def test_jpeg_kinds_run_every_pipeline_on_every_kind_and_cost_is_against_that_kinds_plain(
        monkeypatch):
    from benchmarks import input_pipeline

    calls = []

    def fake_reading(pattern, augment_name, batches):
        calls.append((pattern, augment_name))
        rate = {"light": 800.0, "photo": 600.0}[pattern]
        factor = {None: 1.0, "autoaugment": 0.9, "randaugment": 0.8}[augment_name]
        # CPU per image: 2.0 ms plain; AutoAugment 5% more, RandAugment 30% more on light
        # JPEGs and 10% / 20% more on photo-like ones (not tied to the rate: its own figure).
        cpu = 2.0 * {None: 1.0, "autoaugment": 1.05 if pattern == "light" else 1.1,
                     "randaugment": 1.3 if pattern == "light" else 1.2}[augment_name]
        return rate * factor, cpu

    monkeypatch.setattr(input_pipeline, "pipeline_reading", fake_reading)
    readings = input_pipeline.kinds_rounds({"light": "light", "photo": "photo"}, 5, rounds=2)
    assert calls[:6] == [(kind, name) for kind in ("light", "photo")
                         for name in (None, "autoaugment", "randaugment")]
    assert len(calls) == 12 and readings["images_per_sec"]["photo/autoaugment"] == [540.0, 540.0]
    summary = input_pipeline.summarize_kinds(readings, {"light": 47.0, "photo": 112.0}, cores=2)
    assert summary["photo"]["images_per_sec_per_core"] == {
        "plain": 300.0, "autoaugment": 270.0, "randaugment": 240.0}
    assert summary["light"]["cost"] == {"autoaugment": 0.1, "randaugment": 0.2}
    assert summary["photo"]["cost_paired_median"] == {"autoaugment": 0.1, "randaugment": 0.2}
    assert summary["light"]["cpu_cost_paired_median"] == {"autoaugment": 0.05, "randaugment": 0.3}
    assert summary["photo"]["cpu_cost_paired_median"] == {"autoaugment": 0.1, "randaugment": 0.2}
    assert summary["photo"]["cpu_ms_per_image_median"] == {
        "plain": 2.0, "autoaugment": 2.2, "randaugment": 2.4}
    assert summary["photo"]["mean_jpeg_kb"] == 112.0
