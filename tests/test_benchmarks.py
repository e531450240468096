"""The benchmark harness: result files, the generated results table, each benchmark's statistic
and output (fed fake readings), the accuracy recipe."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks import accuracy, common, conversion, input_pipeline, latency, table

ROOT = Path(__file__).resolve().parents[1]
CPU = {"cpu_count": 2, "cpu": "AMD EPYC", "cpu_simd": ["avx", "avx2", "avx512f", "avx512_vnni"]}


@pytest.fixture
def results_dir(tmp_path, monkeypatch):
    results = tmp_path / "results"
    results.mkdir()
    monkeypatch.setattr(common, "RESULTS_DIR", results)
    monkeypatch.setattr(common, "machine_info", lambda: dict(CPU))
    monkeypatch.setattr(table, "READMES", ())  # never the repository's READMEs
    return results


def test_committed_readme_tables_are_the_ones_results_json_generates():
    """README.md and benchmarks/README.md show exactly what `python -m benchmarks table
    --write` makes of benchmarks/results/*.json: the tables cannot drift from the results."""
    generated = table.render()
    assert generated.count("\n|") > 5  # header, rule and rows of the committed results
    for readme in table.READMES:
        text = readme.read_text()
        assert table.replace_table(text, generated) == text, (
            f"{readme.name}: run python -m benchmarks table --write")


def test_write_result_adds_machine_info_and_keeps_what_the_benchmark_knows(tmp_path, monkeypatch):
    import tensorflow as tf  # noqa: F401  (loaded: the file then says whether oneDNN ran)
    from tensorflow.python.util import _pywrap_util_port

    monkeypatch.setattr(common, "RESULTS_DIR", tmp_path)
    path = common.write_result("gpu", {"summary": ["x"], "machine": {"device": "Test GPU"}})
    payload = json.loads(path.read_text())
    assert payload["benchmark"] == "gpu" and payload["summary"] == ["x"]
    assert payload["machine"]["device"] == "Test GPU"
    assert payload["machine"]["cpu_count"] == os.cpu_count()
    assert payload["machine"]["commit"] == common.code_commit() and "keras" in payload["machine"]
    assert payload["machine"]["tensorflow_onednn"] is bool(_pywrap_util_port.IsMklEnabled())


def test_code_commit_names_the_checkout_and_marks_local_changes(tmp_path, monkeypatch):
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                          capture_output=True, text=True)
    if head.returncode != 0:
        assert common.code_commit() is None
        return
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                            ":(exclude)benchmarks/results", ":(exclude)README.md",
                            ":(exclude)benchmarks/README.md"],
                           cwd=ROOT, capture_output=True, text=True).stdout.strip()
    assert common.code_commit() == head.stdout.strip() + ("+dirty" if dirty else "")
    monkeypatch.setattr(common, "__file__", str(tmp_path / "benchmarks" / "common.py"))
    assert common.code_commit() is None  # not a git checkout


def test_cpu_simd_reads_the_flags_line_and_host_names_it():
    text = ("processor\t: 0\nmodel name\t: AMD EPYC\n"
            "flags\t\t: fpu sse2 avx fma avx2 avx512f avx512_vnni avx512bw\n")
    assert common.cpu_simd(text) == ["avx", "avx2", "fma", "avx512f", "avx512_vnni"]
    assert common.cpu_simd("processor : 0\nFeatures : fp asimd evtstrm\n") == ["asimd"]
    assert common.cpu_simd("") == []
    assert table.host(CPU) == "2-core AMD EPYC, AVX-512 VNNI"
    assert table.host({"cpu_count": 16, "cpu": "Xeon", "cpu_simd": ["avx"]}) == \
        "16-core Xeon, AVX only"
    assert table.host({**CPU, "device": "NVIDIA H100"}) == "NVIDIA H100"


def test_paired_ratio_compares_readings_of_the_same_round():
    rates = {"ours": [1000.0, 600.0, 900.0], "baseline": [100.0, 50.0, 100.0]}  # 10, 12, 9x
    assert common.paired_ratio(rates, "ours", "baseline") == pytest.approx(10.0)
    # The best of each would pair round 1's 1000 with round 1's 100 by chance only.
    assert common.paired_ratio({"a": [2.0, 9.0], "b": [1.0, 10.0]}, "a", "b") == \
        pytest.approx((2.0 + 0.9) / 2)


def test_json_line_returns_the_last_line_and_names_a_failed_command():
    code = "import json; print('progress'); print(json.dumps({'rate': 2.5}))"
    assert common.json_line([sys.executable, "-c", code], "peer") == {"rate": 2.5}
    with pytest.raises(RuntimeError, match=r"^the peer failed \(1\): out of memory"):
        common.json_line([sys.executable, "-c", "import sys; sys.exit('out of memory')"],
                         "the peer")


def test_table_main_writes_between_the_markers_and_check_reports_drift(results_dir, tmp_path,
                                                                       capsys):
    common.write_result("scaling", {
        "settings": {"model": "efficientnet-b0", "image_size": 64, "global_batch": 32},
        "images_per_sec": {"1 device": 250.0, "2 logical devices (Mirrored)": 125.0}})
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{table.BEGIN}\nold\n{table.END}\nafter\n")
    assert table.main(check=True, readmes=[readme], results_dir=results_dir) == 1
    assert "table differs" in capsys.readouterr().out and "old" in readme.read_text()
    assert table.main(write=True, readmes=[readme], results_dir=results_dir) == 0
    assert readme.read_text() == (
        f"intro\n{table.BEGIN}\n{table.HEADER[0]}\n{table.HEADER[1]}\n"
        "| 2 logical devices (Mirrored) on the cores of 1 device (efficientnet-b0 64 px, global "
        "batch 32) | 125 img/s | 250 img/s (1 device) | 0.50x | "
        f"2-core AMD EPYC, AVX-512 VNNI |\n{table.END}\nafter\n")
    assert table.main(check=True, readmes=[readme], results_dir=results_dir) == 0
    with pytest.raises(ValueError, match="no <!-- results:begin -->"):
        table.replace_table("no markers", "table")


def test_train_speed_result_gives_the_table_its_row(results_dir, monkeypatch):
    from benchmarks import torch_peers, train_speed

    readings = iter([40.0, 25.0])  # ours, then keras.applications
    monkeypatch.setattr(train_speed, "engine_images_per_sec", lambda *args: next(readings))
    monkeypatch.setattr(torch_peers, "run_peer", lambda *args: {"images_per_sec": 20.0})
    common.write_result("train", train_speed.run(quick=True))
    assert table.render(results_dir).splitlines()[3] == (
        "| training efficientnet-b0 on CPU, 224 px, batch 32, float32 | 40.0 img/s | 25.0 img/s "
        "(keras.applications, same engine) | 1.60x | 2-core AMD EPYC, AVX-512 VNNI |")


def test_runner_writes_the_result_prints_its_rows_and_rewrites_the_readme_tables(
        results_dir, tmp_path, monkeypatch, capsys):
    from benchmarks import __main__ as runner
    from benchmarks import train_speed

    readme = tmp_path / "README.md"
    readme.write_text(f"{table.BEGIN}\n{table.END}\n")
    monkeypatch.setattr(table, "READMES", (readme,))
    monkeypatch.setattr(train_speed, "run", lambda quick: {
        "settings": {"image_size": 224, "batch": 32, "precision": "float32"},
        "ours_images_per_sec": 30.0, "keras_applications_images_per_sec": 20.0,
        "timm_images_per_sec": None, "quick": quick})
    assert runner.main(["run", "--quick", "--only", "train"]) == 0
    written = json.loads((results_dir / "train.json").read_text())
    assert written["quick"] is True and written["wall_seconds"] >= 0
    row = ("| training efficientnet-b0 on CPU, 224 px, batch 32, float32 | 30.0 img/s | 20.0 img/s "
           "(keras.applications, same engine) | 1.50x | 2-core AMD EPYC, AVX-512 VNNI |")
    assert f"[train] {row}" in capsys.readouterr().out
    assert readme.read_text() == "\n".join([table.BEGIN, *table.HEADER, row, table.END, ""])


def test_gpu_row_compares_the_fastest_finite_run_with_timm_and_skips_nan(results_dir):
    base = {"batch": 128, "size": 224, "model": "efficientnet-b0"}
    speed = [
        {**base, "framework": "keras-jax", "precision": "mixed_bfloat16",
         "images_per_sec": 300.0, "loss": float("nan")},
        {**base, "framework": "keras-jax", "precision": "float32", "images_per_sec": 240.0,
         "loss": 6.9},
        {**base, "framework": "timm-torch", "timm_model": "efficientnet_b0",
         "precision": "autocast-bfloat16", "images_per_sec": 200.0, "loss": 6.8},
        {"framework": "keras-jax", "model": "efficientnetv2-s", "error": ["OOM"]},
    ]
    # json writes NaN as the bare token NaN, which json.loads reads back as float("nan").
    common.write_result("gpu", {"speed": speed, "machine": {"device": "Test GPU"}})
    assert table.render(results_dir).splitlines()[3:-1] == [
        "| training efficientnet-b0 on GPU, 224 px, batch 128 | 240 img/s (Keras on JAX, "
        "float32) | 200 img/s (efficientnet_b0, bf16 autocast) | 1.20x | Test GPU |"]


def test_latency_keeps_each_contenders_best_round_and_compares_the_fastest(results_dir):
    readings = iter([(2.0, 100.0), (3.0, 90.0), (1.5, 80.0),  # round 1: ours a, ours b, peer
                     (1.8, 120.0), (3.5, 95.0), (1.2, 70.0)])  # round 2

    def measure(name):
        p50, rate = next(readings)
        return {"batch1_p50_ms": p50, "batch1_p90_ms": p50 + 1, "images_per_second": rate}

    figures = latency.best_of_rounds({n: n for n in ("ours a", "ours b", "peer x")}, 2, measure)
    assert figures["ours a"] == {"batch1_p50_ms": 1.8, "batch1_p90_ms": 2.8,
                                 "images_per_second": 120.0, "rounds": 2}
    # The whole reading of the lowest-p50 round, not the best of each field over rounds.
    assert figures["peer x"] == {"batch1_p50_ms": 1.2, "batch1_p90_ms": 2.2,
                                 "images_per_second": 70.0, "rounds": 2}
    figures["ours c"] = {"error": "conversion failed"}
    assert latency.compare(figures) == {"best_ours": "ours a", "best_peer": "peer x",
                                        "ratio_best_ours_vs_best_peer": 1.5}
    common.write_result("latency", {"settings": {"threads": 2}, "figures": figures,
                                    **latency.compare(figures)})
    assert table.render(results_dir).splitlines()[3].startswith(
        "| exported efficientnet-b0, batch-1 latency (p50, lower is better), 2 threads | "
        "1.80 ms (a) | 1.20 ms (peer x) | 1.50x |")


def test_keras_applications_peer_normalises_its_input_like_a_deployed_model():
    """weights=None leaves keras.applications' Normalization at mean 0 / variance 1, which the
    TFLite converter drops: the latency peer would skip work that every deployment runs."""
    import keras

    model = keras.applications.EfficientNetB0(weights=None, input_shape=(32, 32, 3))
    latency._imagenet_normalization(model)
    pixels = np.random.default_rng(0).uniform(0, 255, (1, 4, 4, 3)).astype("float32")
    layer = next(layer for layer in model.layers if type(layer).__name__ == "Normalization")
    expected = (pixels / 255 - np.array(latency.IMAGENET_MEAN)) / np.sqrt(
        latency.IMAGENET_VARIANCE)
    np.testing.assert_allclose(np.asarray(layer(pixels / 255)), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_keras_applications_peer_runs_through_our_predictor_like_our_export(tmp_path):
    """The peer's TFLite files carry our export's signature, so the same `load_predictor` code
    runs both: float pixels in, probabilities out, int8 quantisation handled alike."""
    from efficientnet.export import load_predictor

    pixels = np.random.default_rng(0).uniform(0, 255, (3, 32, 32, 3)).astype("float32")
    paths = latency._keras_applications_tflite(str(tmp_path), pixels, size=32)
    fp32, int8 = (load_predictor(paths[kind], 1) for kind in ("fp32", "int8"))
    assert (fp32.image_size, fp32.num_classes, int8.input_dtype) == (32, 1000, np.int8)
    probabilities = fp32.predict(pixels[:2])
    assert probabilities.shape == (2, 1000) and probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-4)
    # Random weights spread ~1/1000 over every class, below the int8 output's step of 1/256:
    # dequantised, each probability is 0 or a multiple of that step.
    quantised = int8.predict(pixels[:2])
    assert quantised.shape == (2, 1000) and quantised.dtype == np.float32
    assert ((quantised >= 0) & (quantised <= 1)).all()
    np.testing.assert_allclose(quantised * 256, np.round(quantised * 256), atol=1e-3)


def test_input_pipelines_run_in_interleaved_rounds_and_cost_is_the_paired_median(
        results_dir, monkeypatch):
    rates = iter([100.0, 95.0, 80.0, 50.0, 45.0, 45.0, 120.0, 90.0, 96.0])
    calls = []

    def fake_reading(pattern, augment_name, batches):
        calls.append((pattern, augment_name, batches))
        return next(rates)

    monkeypatch.setattr(input_pipeline, "pipeline_reading", fake_reading)
    readings = input_pipeline.interleaved_rounds("p", batches=7, rounds=3)
    assert calls == [("p", None, 7), ("p", "autoaugment", 7), ("p", "randaugment", 7)] * 3
    summary = input_pipeline.summarize(readings, num_cores=2)
    assert summary["pipeline_images_per_sec_per_core"] == {
        "plain": 60.0, "autoaugment": 47.5, "randaugment": 48.0}
    # AutoAugment's paired costs 0.05, 0.10, 0.25: median 0.10, where the best of each,
    # 1 - 95 / 120 = 0.21, would pair the third round's plain reading with the first's.
    assert summary["augmentation_cost_paired_median"] == {"autoaugment": 0.1,
                                                          "randaugment": 0.2}
    common.write_result("input", {"image_size": 224, **summary})
    assert table.render(results_dir).splitlines()[3:5] == [
        f"| training input at 224 px, cost of {name} over plain (ImageNet-like JPEGs) | "
        f"{cost} | plain: 60.0 img/s/core | - | 2-core AMD EPYC, AVX-512 VNNI |"
        for name, cost in (("AutoAugment", "+10.0% (47.5 img/s/core)"),
                           ("RandAugment", "+20.0% (48.0 img/s/core)"))]


def test_photo_like_jpegs_are_encoded_as_imagenet_ones(tmp_path):
    from PIL import Image

    photo = input_pipeline.make_images(str(tmp_path / "photo"), 4)
    sizes = [Path(p).stat().st_size for p in photo]
    assert 95e3 < np.mean(sizes) < 130e3, sizes
    with Image.open(photo[0]) as image:
        assert (image.size, image.mode) == ((500, 375), "RGB")
        # no chroma subsampling: every component samples 1 x 1
        assert tuple(f for _, h, v, _ in image.layer for f in (h, v)) == (1, 1, 1, 1, 1, 1)
    assert sorted(os.listdir(tmp_path / "photo")) == ["class0", "class1", "class2", "class3"]


def test_conversion_links_every_file_and_reports_the_paired_speedup(results_dir, tmp_path,
                                                                    monkeypatch):
    source = tmp_path / "images"
    for folder, name, data in (("class0", "a.jpg", b"first"), ("class1", "b.jpg", b"second")):
        (source / folder).mkdir(parents=True, exist_ok=True)
        (source / folder / name).write_bytes(data)
    paths = conversion.linked_copies(str(source), str(tmp_path / "linked"), copies=3)
    assert sorted(os.path.relpath(p, tmp_path / "linked") for p in paths) == sorted(
        f"{folder}/{copy}_{name}" for copy in range(3)
        for folder, name in (("class0", "a.jpg"), ("class1", "b.jpg")))
    assert (tmp_path / "linked" / "class1" / "2_b.jpg").read_bytes() == b"second"
    assert os.stat(source / "class0" / "a.jpg").st_nlink == 4  # hard links, not copies

    monkeypatch.setattr(conversion, "make_images",
                        lambda directory, count: conversion.linked_copies(str(source), directory, 1))
    monkeypatch.setattr(common, "cores", lambda: 2)
    ours, baseline = iter([1000.0, 600.0, 900.0]), iter([100.0, 50.0, 100.0])
    monkeypatch.setattr(conversion, "ours_convert", lambda *args: next(ours))
    monkeypatch.setattr(conversion, "baseline_convert", lambda *args: next(baseline))
    monkeypatch.setattr(conversion, "COPIES", 2)
    result = conversion.run()
    assert result["conversion_images"] == 4 and result["conversion_speedup_paired_median"] == 10.0
    assert result["conversion_images_per_sec_per_core"] == {
        "tfrecord_tools": 500.0, "baseline (TF-models style threads)": 50.0}
    common.write_result("conversion", result)
    assert table.render(results_dir).splitlines()[3] == (
        "| converting 4 JPEGs to TFRecords | 500 img/s/core | 50.0 img/s/core (TF-models-style "
        "threads) | 10.0x | 2-core AMD EPYC, AVX-512 VNNI |")


def test_accuracy_trains_through_the_cli_with_its_recipe_and_reads_the_eval_curve(
        tmp_path, monkeypatch):
    commands = []

    def fake_run(args, log):
        commands.append(args)
        model_dir = Path(next(a for a in args if a.startswith("--model_dir=")).split("=", 1)[1])
        model_dir.mkdir(parents=True)
        records = [{"kind": "train", "global_step": 10},
                   {"kind": "eval", "global_step": 10, "top_1_accuracy": 0.5},
                   {"kind": "eval", "global_step": 20, "top_1_accuracy": 0.75}]
        (model_dir / "metrics.jsonl").write_text("\n".join(map(json.dumps, records)) + "\n")
        return 12.34

    monkeypatch.setattr(accuracy, "_run", fake_run)
    part = accuracy.train(tmp_path / "data", tmp_path / "model", classes=5, num_train=1000,
                          steps=20, steps_per_eval=10, batch=128, log=tmp_path / "log",
                          epochs=2.0, precise_bn_batches=20,
                          extra=["--restore_path=/ckpt", "--restore_exclude=head/dense"])
    assert part["curve"] == [(10, 0.5), (20, 0.75)] and part["final"]["top_1_accuracy"] == 0.75
    assert part["wall_seconds"] == 12.3
    assert commands[0][1:3] == ["-m", "efficientnet.main"]
    assert commands[0][3:] == part["command"][2:] == [
        "--model_name=efficientnet-b0", f"--data_dir={tmp_path / 'data'}",
        f"--model_dir={tmp_path / 'model'}", "--mode=train_and_eval", "--num_label_classes=5",
        "--num_train_images=1000", "--train_batch_size=128", "--eval_batch_size=500",
        "--train_steps=20", "--steps_per_eval=10", "--iterations_per_loop=10",
        "--lr_schedule=cosine", "--warmup_epochs=0.4", "--moving_average_decay=0.999",
        "--crop_padding=0", "--image_size=48", "--min_crop_area=1", "--base_learning_rate=0.016",
        "--dropout_rate=0", "--drop_connect_rate=0", "--precise_bn_batches=20",
        "--restore_path=/ckpt", "--restore_exclude=head/dense"]


def test_accuracy_table_rows_read_each_part(results_dir):
    scratch = {"final": {"top_1_accuracy": 0.92345}, "settings": {"image_size": 48, "epochs": 10}}
    finetune = {"settings": {"image_size": 80, "epochs": 3},
                "imagenet": {"final": {"top_1_accuracy": 0.9412}, "wall_seconds": 1500.0},
                "scratch": {"final": {"top_1_accuracy": 0.9001}},
                "int8": {"tflite": {"top1": 0.9412}, "tflite_int8": {"top1": 0.9398}}}
    assert table.accuracy_rows({"scratch_10_classes": scratch, "imagenet_finetune": finetune}) == [
        ("Fashion-MNIST top-1, efficientnet-b0 48 px from scratch, 10 epochs", "92.34%", "", ""),
        ("Fashion-MNIST top-1, ImageNet efficientnet-lite0 (PyTorch weights) fine-tuned 80 px, "
         "3 epoch(s), 25 min", "94.12%", "90.01% (from scratch, same steps)", "+4.11 points"),
        ("Fashion-MNIST top-1 of the fine-tuned Lite0, TFLite int8 (10,000 images)", "93.98%",
         "94.12% (TFLite fp32)", "-0.14 points")]
    photos = {"tflite": {"top1": 1.0}, "tflite_int8": {"top1": 2 / 3},
              "batch1_p50_ms": {"tflite": 12.0, "tflite_int8": 7.044}}
    assert table.accuracy_rows({"imagenet_photos_int8": photos}) == [
        ("ImageNet efficientnet-lite0 as TFLite int8, 224 px, batch-1 latency (p50), labelled "
         "photos right: int8 67%, fp32 100%", "7.04 ms", "12.00 ms (TFLite fp32)", "0.59x")]
    assert table.accuracy_rows({"imagenet_finetune": {"settings": {}}}) == []
    # Results written before per-part settings kept image_size and epochs at the top level.
    old = {"image_size": 32, "epochs": 9, "scratch_10_classes": {"final": scratch["final"]}}
    assert table.accuracy_rows(old)[0][0].endswith("32 px from scratch, 9 epochs")


@pytest.mark.parametrize("module", ["benchmarks", "benchmarks.accuracy", "benchmarks.gpu_jax",
                                    "benchmarks.torch_peers", "benchmarks.input_pipeline"])
def test_benchmark_commands_have_help(module):
    proc = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True,
                          text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "usage:" in proc.stdout


def test_benchmarks_table_check_command_passes_on_the_committed_readmes():
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "table", "--check"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
