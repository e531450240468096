"""`python -m efficientnet.infer` on the formats exported by tests/test_export.py's fixture."""

import math

import numpy as np
import pytest

from efficientnet.export import ExportError
from efficientnet.infer import InferConfig, main, run_infer
from tests import test_export
from tests.test_export import CLASS_NAMES, encode, run_cli, toy_images

exported = test_export.exported  # the export tests' session fixture (one toy export per run)
pytestmark = pytest.mark.xdist_group("export")


@pytest.fixture
def image_folder(tmp_path):
    """Three readable images of classes 0, 3, 5 (JPEG and PNG), one corrupt file, one non-image."""
    folder = tmp_path / "images"
    folder.mkdir()
    images = toy_images(np.array([0, 3, 5]), np.random.default_rng(11), height=60, width=44)
    (folder / "a_class0.jpg").write_bytes(encode(images[0]))
    (folder / "b_class3.png").write_bytes(encode(images[1], "PNG"))
    (folder / "c_class5.jpeg").write_bytes(encode(images[2]))
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a whole JPEG")
    (folder / "notes.txt").write_text("not an image")
    return folder


# --- fast: errors before any model is loaded ----------------------------------------------------


def test_missing_model_is_one_clear_line(tmp_path, capsys):
    assert main(["--model", str(tmp_path / "model.tflite"), "--benchmark"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: Model {tmp_path / 'model.tflite'} does not exist."


def test_unknown_model_type_and_missing_action(tmp_path, capsys):
    weights = tmp_path / "model.h5"
    weights.write_bytes(b"")
    assert main(["--model", str(weights), "--benchmark"]) == 2
    assert "Cannot tell the format" in capsys.readouterr().err
    assert main(["--model", str(tmp_path)]) == 2
    assert "Nothing to do" in capsys.readouterr().err
    with pytest.raises(ExportError, match="without saved_model.pb"):
        run_infer(InferConfig(model=str(tmp_path), benchmark=True))


def test_missing_image_is_reported(tmp_path):
    model = tmp_path / "m.onnx"
    model.write_bytes(b"")
    with pytest.raises(ExportError, match="Image .*nope.jpg does not exist"):
        run_infer(InferConfig(model=str(model), images=(str(tmp_path / "nope.jpg"),)))


# --- slow: need the exported toy model ----------------------------------------------------------


@pytest.mark.slow
def test_cli_folder_with_corrupt_file_reports_it_and_classifies_the_rest(exported, image_folder):
    result = run_cli("efficientnet.infer", "--model", str(exported["dir"] / "model_fp32.tflite"),
                     "--images", str(image_folder))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    lines = result.stdout.splitlines()
    skipped = [line for line in lines if line.startswith("skipped ")]
    assert len(skipped) == 1 and "broken.jpg" in skipped[0]
    predicted = [line for line in lines if line.split(":")[0].endswith((".jpg", ".png", ".jpeg"))
                 and not line.startswith("skipped")]
    assert len(predicted) == 3
    for line in predicted:  # top-5 with class names from the export's labels.txt
        assert line.split(": ", 1)[1].count("colour_") == 5
    assert "classified 3 image(s), skipped 1 unreadable" in result.stdout


@pytest.mark.slow
def test_float_formats_classify_alike_and_int8_classifies_every_image(exported, image_folder):
    outputs = {}
    for name in ("saved_model", "model_fp32.tflite", "model.onnx", "model_int8.tflite"):
        results = run_infer(InferConfig(model=str(exported["dir"] / name),
                                        images=(str(image_folder),)), out=lambda _: None)
        assert [s["file"].endswith("broken.jpg") for s in results["skipped"]] == [True]
        outputs[name] = [p["top"] for p in results["predictions"]]
    reference = outputs["saved_model"]
    for name in ("model_fp32.tflite", "model.onnx"):
        for got, want in zip(outputs[name], reference):
            assert [e["class"] for e in got] == [e["class"] for e in want]
            np.testing.assert_allclose([e["probability"] for e in got],
                                       [e["probability"] for e in want], atol=1e-4)
    assert all(e["name"] in CLASS_NAMES for top in reference for e in top)
    int8 = outputs["model_int8.tflite"]
    assert len(int8) == 3 and all(len(top) == 5 for top in int8)
    assert all(math.isfinite(e["probability"]) for top in int8 for e in top)


@pytest.mark.slow
def test_validation_accuracy_matches_the_export_report(exported):
    report = exported["report"]["formats"]
    for name, fmt in (("saved_model", "saved_model"), ("model_int8.tflite", "tflite_int8")):
        results = run_infer(InferConfig(model=str(exported["dir"] / name),
                                        data_dir=exported["data_dir"]), out=lambda _: None)
        accuracy = results["accuracy"]
        assert accuracy["num_images"] == 60
        assert accuracy["top1"] == pytest.approx(report[fmt]["top1"])
        assert accuracy["top5"] == pytest.approx(report[fmt]["top5"])


@pytest.mark.slow
def test_benchmark_reports_latency_throughput_and_threads(exported):
    lines = []
    results = run_infer(InferConfig(model=str(exported["dir"] / "model.onnx"), benchmark=True,
                                    benchmark_runs=6, num_threads=1), out=lines.append)
    bench = results["benchmark"]
    assert bench["threads"] == 1 and bench["batch1_runs"] == 6 and bench["batch_size"] == 32
    assert 0 < bench["batch1_p50_ms"] <= bench["batch1_p90_ms"]
    assert bench["images_per_second"] > 0
    assert "1 threads, warm-up excluded" in lines[-1] and "images/s" in lines[-1]
