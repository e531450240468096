"""Export: every format from a tiny trained checkpoint, parity with Keras, reload, clear errors.

The session fixture fits efficientnet-b0 at 32 px to a 10-colour toy task (a linear probe),
writes the checkpoint in the training engine's layout (EMA section included), writes toy
TFRecords and exports every format once through `run_export` (what the CLI calls).
"""

import fcntl
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from efficientnet.export import FORMATS, ExportConfig, ExportError, parse_formats
from efficientnet.export.labels import data_dir_labels, read_labels

pytestmark = pytest.mark.xdist_group("export")

MODEL_NAME = "efficientnet-b0"
IMAGE_SIZE = 32
NUM_CLASSES = 10
CLASS_NAMES = [f"colour_{i}" for i in range(NUM_CLASSES)]
# Ten well separated RGB colours: class i is an image tinted with colour i.
PALETTE = np.array([
    [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
    [145, 30, 180], [70, 240, 240], [240, 50, 230], [128, 128, 128], [0, 0, 0],
], np.float32)


def toy_images(labels, rng, height=40, width=48):
    """uint8 images of the colour task: the class colour, a gradient and noise."""
    ramp = np.linspace(-30, 30, width)[None, :, None]
    images = PALETTE[labels][:, None, None, :] + ramp + rng.normal(0, 12, (len(labels), height,
                                                                              width, 3))
    return np.clip(images, 0, 255).astype(np.uint8)


def encode(image, image_format="JPEG"):
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format=image_format)
    return buffer.getvalue()


def write_tfrecords(path, images, labels):
    """TF-slim layout records (docs/reference.md#tfrecord-layout); labels stored 1-based."""
    import tensorflow as tf

    def feature(value):
        if isinstance(value, bytes):
            return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))

    with tf.io.TFRecordWriter(path) as writer:
        for index, (image, label) in enumerate(zip(images, labels)):
            features = {
                "image/encoded": feature(encode(image)),
                "image/format": feature(b"JPEG"),
                "image/class/label": feature(int(label) + 1),
                "image/class/synset": feature(CLASS_NAMES[label].encode()),
                "image/class/text": feature(CLASS_NAMES[label].encode()),
                "image/filename": feature(f"{index}.jpg".encode()),
                "image/height": feature(image.shape[0]),
                "image/width": feature(image.shape[1]),
                "image/colorspace": feature(b"RGB"),
                "image/channels": feature(3),
            }
            example = tf.train.Example(features=tf.train.Features(feature=features))
            writer.write(example.SerializeToString())


def train_toy_model(seed=0):
    """efficientnet-b0, 32 px, 10 classes, BatchNorm statistics and head fitted to the toy task.

    Backprop through b0 costs minutes on 2 CPU cores, so the head is fitted as a linear probe:
    ridge regression of one-hot targets on the frozen (randomly initialised) pooled features.
    The model then classifies the toy task confidently, which makes agreement checks meaningful.
    """
    import keras
    import tensorflow as tf

    from efficientnet.data.preprocessing import normalize_images
    from efficientnet.export.images import preprocess
    from efficientnet.models import build, get_spec

    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    spec = get_spec(MODEL_NAME)
    labels = np.arange(200) % NUM_CLASSES
    raw = toy_images(labels, rng)
    pixels = np.stack([preprocess(tf.constant(encode(im)), IMAGE_SIZE, spec.crop_padding,
                                  spec.interpolation).numpy() for im in raw])
    model = build(MODEL_NAME, num_classes=NUM_CLASSES, image_size=IMAGE_SIZE)
    inputs = normalize_images(tf.constant(pixels), spec)
    # Set every BatchNorm's moving statistics to the toy data's (momentum 0 for one pass), so
    # activations in inference mode have realistic scales (at init they shrink to ~1e-6).
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in norms:
        layer.momentum = 0.0
    tf.function(lambda x: model(x, training=True))(inputs)
    for layer in norms:
        layer.momentum = spec.bn_momentum
    features_model = keras.Model(model.input, model.get_layer("head_pool").output)
    features = tf.function(features_model)(inputs).numpy()
    mean, scale = features.mean(0), features.std(0) + 1e-6
    standardised = (features - mean) / scale
    targets = 8.0 * (np.eye(NUM_CLASSES)[labels] - 1.0 / NUM_CLASSES)
    gram = standardised.T @ standardised + 100.0 * np.eye(standardised.shape[1])
    weights = np.linalg.solve(gram, standardised.T @ targets)
    # logits = ((f - mean) / scale) @ W  ==  f @ (W / scale) - (mean / scale) @ W
    dense = model.get_layer("head_dense")
    dense.kernel.assign((weights / scale[:, None]).astype(np.float32))
    dense.bias.assign((-(mean / scale) @ weights).astype(np.float32))
    return model


def write_checkpoint(model, model_dir, step=40, raw_head_zeroed=True):
    """The training engine's layout: `model/` raw weights and `ema/` averages (here the trained
    weights). The raw head is zeroed so a test can tell which section an export restored."""
    import tensorflow as tf

    from efficientnet.train import checkpointing

    weights = checkpointing.weight_dict(model)
    ema = {path: tf.Variable(variable.numpy()) for path, variable in weights.items()}
    trained = {path: variable.numpy() for path, variable in weights.items()}
    if raw_head_zeroed:
        for path, variable in weights.items():
            if path.startswith("head_dense/"):
                variable.assign(np.zeros(variable.shape, variable.dtype))
    step_variable = tf.Variable(step, dtype=tf.int64)
    checkpoint = checkpointing.make_checkpoint(model, step_variable, ema_variables=ema)
    checkpointing.make_manager(checkpoint, model_dir, max_to_keep=1, step=step_variable).save(
        checkpoint_number=step)
    for path, variable in weights.items():  # leave the in-memory model trained
        variable.assign(trained[path])


# One toy export per test run: tests/test_infer.py uses it too (pytest registers the fixture in
# both modules, hence the per-process cache), and with pytest-xdist the workers share it through
# a lock file (pytest 9.2 ignores xdist_group, so both workers may ask for it at once).
_SESSION: dict = {}


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    """Every format of a checkpointed toy model, exported once through `run_export`."""
    if "exported" not in _SESSION:
        base = tmp_path_factory.getbasetemp()
        shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
        root = shared / "toy_export"
        with open(str(root) + ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not (root / "DONE").exists():
                root.mkdir(exist_ok=True)
                export_toy_run(make_toy_run(root))
                (root / "DONE").write_text("ok")
        _SESSION["exported"] = load_toy_export(root)
    return _SESSION["exported"]


def make_toy_run(root):
    """Toy TFRecords, a labels file and a checkpoint of the fitted toy model under `root`."""
    rng = np.random.default_rng(1)
    data_dir = root / "data"
    data_dir.mkdir()
    for split, count in (("train", 40), ("validation", 60)):
        labels = np.arange(count) % NUM_CLASSES
        write_tfrecords(str(data_dir / f"{split}-00000-of-00001"), toy_images(labels, rng), labels)
    (root / "labels.txt").write_text("".join(f"{name}\n" for name in CLASS_NAMES))
    write_checkpoint(train_toy_model(), str(root / "model"))
    return root


def export_toy_run(root):
    from efficientnet.export import run_export

    config = ExportConfig(
        model_name=MODEL_NAME, model_dir=str(root / "model"), export_dir=str(root / "export"),
        num_label_classes=NUM_CLASSES, image_size=IMAGE_SIZE, data_dir=str(root / "data"),
        num_steps=20, num_eval_images=60, labels_file=str(root / "labels.txt"),
    )
    return run_export(config)


def load_toy_export(root):
    """The export's paths and report, and the toy model rebuilt from its checkpoint's EMA."""
    from efficientnet.models import build
    from efficientnet.train.checkpointing import load_weights_for_inference

    model = build(MODEL_NAME, num_classes=NUM_CLASSES, image_size=IMAGE_SIZE)
    load_weights_for_inference(model, str(root / "model"), use_ema=True)
    report = json.loads((root / "export" / "export_report.json").read_text())
    return {"root": root, "dir": root / "export", "report": report, "model": model,
            "data_dir": str(root / "data"), "model_dir": str(root / "model"),
            "labels_file": str(root / "labels.txt")}


# --- fast unit tests --------------------------------------------------------------------------


def test_parse_formats_canonical_order_and_all():
    assert parse_formats("onnx,saved_model") == ("saved_model", "onnx")
    assert parse_formats("all") == FORMATS
    assert parse_formats(" tflite_int8 , TFLITE ") == ("tflite", "tflite_int8")


def test_unknown_format_is_a_clear_error():
    with pytest.raises(ExportError, match="Unknown export format.*tflite_int4"):
        parse_formats("tflite,tflite_int4")


def test_config_rejects_old_onnx_opset():
    with pytest.raises(ExportError, match="opset"):
        ExportConfig(model_name=MODEL_NAME, export_dir="x", onnx_opset=11)


def test_labels_file_checks_class_count(tmp_path):
    path = tmp_path / "labels.txt"
    path.write_text("n01\tcat\nn02\tdog\n")
    assert read_labels(str(path), 2) == ["cat", "dog"]
    with pytest.raises(ExportError, match="names 2 classes but the model has 3"):
        read_labels(str(path), 3)
    path.write_text("".join(f"c{i}\n" for i in range(1000)))
    assert read_labels(str(path), 1001)[:2] == ["background", "c0"]


def test_class_names_come_from_the_data_dir_when_they_fit(tmp_path, caplog):
    assert data_dir_labels(str(tmp_path), 2) is None  # no labels.txt
    (tmp_path / "labels.txt").write_text("cat\ndog\n")
    assert data_dir_labels(str(tmp_path), 2) == ["cat", "dog"]
    with caplog.at_level("WARNING"):
        assert data_dir_labels(str(tmp_path), 3) is None
    assert "Not using" in caplog.text and "names 2 classes but the model has 3" in caplog.text


def run_cli(module, *args, timeout=300):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                          timeout=timeout, env=env, check=False)


def test_export_from_empty_model_dir_fails_clearly(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run_cli("efficientnet.export", f"--model_name={MODEL_NAME}",
                     f"--model_dir={empty}", f"--export_dir={tmp_path / 'out'}")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "empty" in result.stderr and str(empty) in result.stderr
    assert not (tmp_path / "out").exists()


def test_export_cli_user_errors_are_one_line(tmp_path, capsys):
    from efficientnet.export.__main__ import main

    assert main(["--model_name=efficientnet-b99", f"--model_dir={tmp_path}"]) == 1
    assert "Unknown model name 'efficientnet-b99'" in capsys.readouterr().err
    assert main([f"--model_name={MODEL_NAME}", f"--model_dir={tmp_path / 'nope'}"]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert main([f"--model_name={MODEL_NAME}", f"--model_dir={tmp_path}", "--formats=pb"]) == 2
    assert "Unknown export format(s) pb" in capsys.readouterr().err


def test_model_dir_without_checkpoint_fails_clearly(tmp_path, capsys):
    from efficientnet.export.__main__ import main

    (tmp_path / "notes.txt").write_text("no checkpoint here")
    code = main([f"--model_name={MODEL_NAME}", f"--model_dir={tmp_path}", "--image_size=32",
                 "--num_label_classes=10", f"--export_dir={tmp_path / 'out'}"])
    assert code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: No checkpoint found") and len(err.splitlines()) == 1


# --- the full export (slow: trains a toy model and converts five formats) ----------------------


@pytest.mark.slow
def test_report_covers_every_format_with_parity(exported):
    report = exported["report"]
    assert report["ok"] and list(report["formats"]) == list(FORMATS)
    assert report["checkpoint"]["global_step"] == 40 and report["checkpoint"]["ema_weights"]
    assert report["parity_batch"]["source"] == "validation"
    assert report["calibration"]["source"].startswith("train split")
    for fmt, entry in report["formats"].items():
        path = exported["dir"] / entry["file"]
        assert path.exists(), fmt
        assert entry["size_bytes"] > 100_000, fmt
        assert entry["num_images"] == 60 and 0 <= entry["top1"] <= entry["top5"] <= 1, fmt
    for fmt in ("saved_model", "tflite", "onnx"):
        assert report["formats"][fmt]["max_abs_diff"] <= 1e-4, fmt
        assert report["formats"][fmt]["top1_agreement"] == 1.0, fmt
        assert report["formats"][fmt]["top1"] == report["keras"]["top1"], fmt
    assert report["formats"]["tflite_fp16"]["max_abs_diff"] <= 0.1  # sanity only (seen ~0.02)
    sizes = {fmt: entry["size_bytes"] for fmt, entry in report["formats"].items()}
    assert sizes["tflite_int8"] < 0.4 * sizes["tflite"]
    assert sizes["tflite_fp16"] < 0.6 * sizes["tflite"]
    # The toy task is learnable: the trained model is clearly better than chance (10%).
    assert report["keras"]["top1"] >= 0.5


@pytest.mark.slow
def test_int8_model_runs_and_its_gap_is_reported(exported):
    from efficientnet.export.images import read_split
    from efficientnet.export.runtime import load_predictor

    entry = exported["report"]["formats"]["tflite_int8"]
    assert entry["io_type"] == "int8"
    assert entry["top1_gap_vs_keras"] == pytest.approx(
        exported["report"]["keras"]["top1"] - entry["top1"])
    predictor = load_predictor(str(exported["dir"] / entry["file"]))
    assert predictor.input_dtype == np.int8 and predictor.input_quantization == (1.0, -128)
    pixels, labels = read_split(exported["data_dir"], "validation", IMAGE_SIZE, NUM_CLASSES, 8)
    probabilities = predictor.predict(pixels)
    assert probabilities.shape == (8, NUM_CLASSES) and probabilities.dtype == np.float32
    assert np.allclose(probabilities.sum(-1), 1.0, atol=0.05)


@pytest.mark.slow
def test_int8_model_normalises_with_one_delegated_op(exported):
    """The int8 model starts with the input normalisation, a depthwise convolution on groups of
    16 pixels (48 channels), which XNNPACK runs: no uint8 -> int8 QUANTIZE before it (int8
    input), and no per-channel SUB and MUL, which XNNPACK leaves to TFLite's slower kernels."""
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(
        model_path=str(exported["dir"] / "model_int8.tflite"),
        experimental_op_resolver_type=(
            tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES))
    ops = interpreter._get_ops_details()
    assert [op["op_name"] for op in ops[:3]] == ["RESHAPE", "DEPTHWISE_CONV_2D", "RESHAPE"]
    depthwise_input = interpreter._get_tensor_details(ops[1]["inputs"][0], 0)
    assert list(depthwise_input["shape"][1:]) == [IMAGE_SIZE, IMAGE_SIZE // 16, 48]
    assert "SUB" not in [op["op_name"] for op in ops]


def test_inference_normalisation_equals_the_training_one():
    import tensorflow as tf

    from efficientnet.data.preprocessing import normalize_images
    from efficientnet.export.serving import normalize_for_inference
    from efficientnet.models import get_spec

    rng = np.random.default_rng(0)
    for height, width in ((5, 7), (4, 224), (3, 300), (2, 17)):  # pixel groups 7, 16, 15, 1
        pixels = tf.constant(rng.uniform(0, 255, (2, height, width, 3)), tf.float32)
        for name in ("efficientnet-b0", "efficientnetv2-s", "se-resnext50"):
            spec = get_spec(name)
            np.testing.assert_allclose(normalize_for_inference(pixels, spec).numpy(),
                                       normalize_images(pixels, spec).numpy(),
                                       rtol=1e-6, atol=1e-6, err_msg=f"{name} {width}")


@pytest.mark.slow
def test_int8_with_unsigned_input_matches_the_default_signed_model(exported, tmp_path):
    from efficientnet.export.converters import convert_tflite
    from efficientnet.export.images import read_split
    from efficientnet.export.runtime import load_predictor

    calibration, _ = read_split(exported["data_dir"], "train", IMAGE_SIZE, None, 20)
    path = str(tmp_path / "unsigned.tflite")
    convert_tflite(str(exported["dir"] / "saved_model"), path, "int8", calibration, "uint8")
    unsigned = load_predictor(path)
    assert unsigned.input_dtype == np.uint8 and unsigned.input_quantization == (1.0, 0)
    signed = load_predictor(str(exported["dir"] / "model_int8.tflite"))
    pixels, _ = read_split(exported["data_dir"], "validation", IMAGE_SIZE, None, 16)
    np.testing.assert_allclose(signed.predict(pixels), unsigned.predict(pixels), atol=0.02)


@pytest.mark.slow
def test_export_restores_ema_weights(exported):
    """The raw weights in the checkpoint have a zeroed head; the export matches the EMA ones."""
    import tensorflow as tf

    from efficientnet.data.preprocessing import normalize_images
    from efficientnet.export.images import read_split
    from efficientnet.export.runtime import load_predictor
    from efficientnet.models import get_spec

    pixels, _ = read_split(exported["data_dir"], "validation", IMAGE_SIZE, None, 8)
    logits = exported["model"](normalize_images(tf.constant(pixels), get_spec(MODEL_NAME)),
                               training=False)
    expected = tf.nn.softmax(logits).numpy()
    assert expected.max(-1).mean() > 0.2  # not the zeroed head's uniform output
    got = load_predictor(str(exported["dir"] / "saved_model")).predict(pixels)
    np.testing.assert_allclose(got, expected, atol=1e-4)


@pytest.mark.slow
def test_onnx_runs_in_onnxruntime_with_dynamic_batch(exported):
    import onnx
    import onnxruntime as ort

    path = str(exported["dir"] / "model.onnx")
    model = onnx.load(path)
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 13
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    model_input = session.get_inputs()[0]
    assert model_input.shape == ["batch", IMAGE_SIZE, IMAGE_SIZE, 3]
    names = [o.name for o in session.get_outputs()]
    assert {"probabilities", "top_5_classes", "top_5_class_names"} <= set(names)
    rng = np.random.default_rng(0)
    for batch in (1, 5):
        pixels = rng.uniform(0, 255, (batch, IMAGE_SIZE, IMAGE_SIZE, 3)).astype(np.float32)
        outputs = dict(zip(names, session.run(None, {model_input.name: pixels})))
        assert outputs["probabilities"].shape == (batch, NUM_CLASSES)
        top = outputs["top_5_classes"]
        np.testing.assert_array_equal(top[:, 0], outputs["probabilities"].argmax(-1))
        assert outputs["top_5_class_names"][0][0] == CLASS_NAMES[top[0, 0]]


SIGNATURE_CHECK = r"""
import json, sys
import numpy as np
import tensorflow as tf

saved_model, image_file, pixels_file = sys.argv[1:]
loaded = tf.saved_model.load(saved_model)
with open(image_file, "rb") as f:
    encoded = f.read()
pixels = np.load(pixels_file)
by_pixels = loaded.signatures["serving_default"](images=tf.constant(pixels))
by_bytes = loaded.signatures["serving_bytes"](image_bytes=tf.constant([encoded, encoded]))
print(json.dumps({
    "signatures": sorted(loaded.signatures),
    "pixels_top": by_pixels["top_5_classes"].numpy().tolist(),
    "bytes_top": by_bytes["top_5_classes"].numpy().tolist(),
    "bytes_names": [n.decode() for n in by_bytes["top_5_class_names"].numpy()[0]],
    "diff": float(np.abs(by_pixels["probabilities"].numpy()[0]
                         - by_bytes["probabilities"].numpy()[0]).max()),
}))
"""


@pytest.mark.slow
def test_saved_model_reloads_in_fresh_process_and_signatures_agree(exported, tmp_path):
    """A plain TensorFlow process (no project code) runs both signatures on the same image."""
    import tensorflow as tf

    from efficientnet.export.images import preprocess
    from efficientnet.models import get_spec

    spec = get_spec(MODEL_NAME)
    image = toy_images(np.array([3]), np.random.default_rng(5), height=50, width=70)[0]
    image_file = tmp_path / "image.png"
    image_file.write_bytes(encode(image, "PNG"))
    pixels = preprocess(tf.constant(image_file.read_bytes()), IMAGE_SIZE, spec.crop_padding,
                        spec.interpolation).numpy()[None]
    np.save(tmp_path / "pixels.npy", pixels)
    script = tmp_path / "check.py"
    script.write_text(SIGNATURE_CHECK)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run(
        [sys.executable, str(script), str(exported["dir"] / "saved_model"), str(image_file),
         str(tmp_path / "pixels.npy")],
        capture_output=True, text=True, timeout=300, env=env, check=False, cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["signatures"] == ["serving_bytes", "serving_default"]
    assert out["pixels_top"][0][0] == out["bytes_top"][0][0] == out["bytes_top"][1][0]
    assert out["bytes_names"][0] == CLASS_NAMES[out["bytes_top"][0][0]]
    assert out["diff"] < 1e-5


@pytest.mark.slow
def test_fp32_parity_breach_fails_the_export(exported, tmp_path, monkeypatch):
    """A format that disagrees with Keras beyond 1e-4 fails the command and says so."""
    from efficientnet.export import exporter

    real = exporter.keras_probabilities
    monkeypatch.setattr(exporter, "keras_probabilities",
                        lambda *args, **kwargs: real(*args, **kwargs) + 1e-3)
    config = ExportConfig(model_name=MODEL_NAME, export_dir=str(tmp_path / "out"),
                          formats=("saved_model",), parity_batch_size=2)
    with pytest.raises(ExportError, match="saved_model: max abs difference .* exceeds 0.0001"):
        exporter.export_model(exported["model"], config)
    report = json.loads((tmp_path / "out" / "export_report.json").read_text())
    assert report["ok"] is False and "error" in report["formats"]["saved_model"]


@pytest.mark.slow
def test_cli_exports_a_checkpoint_written_by_the_training_engine(tmp_path):
    """End to end: `python -m efficientnet.main` trains 2 steps, `python -m efficientnet.export`
    exports its latest checkpoint (EMA) and the report proves parity."""
    model_dir, export_dir = tmp_path / "run", tmp_path / "export"
    train = run_cli("efficientnet.main", "--model_name=efficientnet-lite0",
                    f"--model_dir={model_dir}",
                    "--use_synthetic_data", "--mode=train", "--image_size=32",
                    "--num_label_classes=10", "--train_batch_size=4", "--train_steps=2",
                    "--iterations_per_loop=2")
    assert train.returncode == 0, train.stderr[-3000:]
    result = run_cli("efficientnet.export", "--model_name=efficientnet-lite0",
                     f"--model_dir={model_dir}", f"--export_dir={export_dir}", "--image_size=32",
                     "--num_label_classes=10", "--formats=saved_model,tflite")
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((export_dir / "export_report.json").read_text())
    assert report["checkpoint"]["global_step"] == 2 and report["checkpoint"]["ema_weights"]
    assert all(entry["max_abs_diff"] <= 1e-4 for entry in report["formats"].values())


def test_quantize_input_rounds_clips_and_keeps_float_inputs():
    from efficientnet.export.runtime import quantize_input

    pixels = np.array([[0.0, 1.0, 127.4, 300.0, -20.0]], np.float32)
    uint8 = quantize_input(pixels, {"dtype": np.uint8, "quantization": (1.0, 0)})
    assert uint8.dtype == np.uint8 and uint8.tolist() == [[0, 1, 127, 255, 0]]
    int8 = quantize_input(pixels, {"dtype": np.int8, "quantization": (2.0, -128)})
    assert int8.dtype == np.int8 and int8.tolist() == [[-128, -128, -64, 22, -128]]
    same = quantize_input(pixels, {"dtype": np.float32, "quantization": (0.0, 0)})
    assert same.dtype == np.float32 and np.array_equal(same, pixels)
    halves = np.array([2.5, 3.5, 254.5, 255.5], np.float32)  # to even, as np.round
    assert quantize_input(halves, {"dtype": np.uint8, "quantization": (1.0, 0)}).tolist() == [
        2, 4, 254, 255]
    assert pixels.tolist() == [[0.0, 1.0, np.float32(127.4), 300.0, -20.0]]  # input untouched


def test_grouped_convolution_matches_keras_and_converts_to_onnx(tmp_path):
    """SE-ResNeXt's grouped 3x3 convs: same numbers as Keras' Conv2D(groups=...), and plain
    Conv ops in ONNX (Keras' own grouped conv is an XLA call tf2onnx cannot convert)."""
    import keras

    from efficientnet.export import export_model
    from efficientnet.models.layers import GroupedConv2D

    x = np.random.default_rng(0).normal(size=(2, 9, 9, 64)).astype(np.float32)
    reference = keras.layers.Conv2D(32, 3, strides=2, groups=8, use_bias=False)
    reference.build(x.shape)
    grouped = GroupedConv2D(32, 3, strides=2, groups=8, use_bias=False)
    grouped.build(x.shape)
    grouped.set_weights(reference.get_weights())
    np.testing.assert_allclose(np.asarray(grouped(x)), np.asarray(reference(x)), atol=1e-5)

    inputs = keras.Input((16, 16, 3), name="images")
    hidden = keras.layers.Conv2D(16, 1, name="stem")(inputs)
    hidden = GroupedConv2D(16, 3, groups=4, padding="same", name="grouped")(hidden)
    logits = keras.layers.Dense(3, name="head")(keras.layers.GlobalAveragePooling2D()(hidden))
    model = keras.Model(inputs, logits)
    report = export_model(model, ExportConfig(model_name="se-resnext50",
                                              export_dir=str(tmp_path / "export"),
                                              formats=("onnx",), image_size=16))
    assert report["ok"] and report["formats"]["onnx"]["max_abs_diff"] <= 1e-4

    import onnx

    graph = onnx.load(str(tmp_path / "export" / "model.onnx")).graph
    kinds = {node.op_type for node in graph.node}
    assert "Conv" in kinds and not kinds & {"StatefulPartitionedCall", "PartitionedCall"}


@pytest.mark.slow
def test_tflite_predictor_equals_the_signature_runner_across_batch_sizes(exported):
    """The predictor runs the signature's graph directly and resizes only when the batch
    changes: batches of 3, 1, 3 give what TFLite's signature runner gives."""
    import tensorflow as tf

    from efficientnet.export.images import read_split
    from efficientnet.export.runtime import load_predictor, quantize_input

    pixels, _ = read_split(exported["data_dir"], "validation", IMAGE_SIZE, NUM_CLASSES, 3)
    for name in ("model_fp32.tflite", "model_int8.tflite"):
        path = str(exported["dir"] / name)
        predictor = load_predictor(path)
        assert predictor._runner is None  # the direct path
        runner = tf.lite.Interpreter(model_path=path).get_signature_runner("serving_default")
        detail = runner.get_input_details()["images"]
        scale, zero_point = runner.get_output_details()["probabilities"]["quantization"]
        for batch in (pixels, pixels[:1], pixels):
            expected = runner(images=quantize_input(batch, detail))["probabilities"]
            if expected.dtype != np.float32:
                expected = (expected.astype(np.float32) - zero_point) * scale
            np.testing.assert_array_equal(predictor.predict(batch), expected, err_msg=name)
