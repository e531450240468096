"""Faults run for real, in fresh processes with timeouts (a hang fails the test): concurrent runs on
one directory, kill -9 and a rerun, a full disk (a file-size limit, no root needed), truncated and
garbage checkpoints, model files and images. Each checks the exit status, the one error line, and
that what was written before is unchanged or still loads."""

import glob
import hashlib
import json
import os
import resource
import signal
import struct
import subprocess
import sys
import time
import zlib

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "3"}
FASHION = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"
needs_fashion = pytest.mark.skipif(not os.path.exists(FASHION), reason="no Fashion-MNIST")
# The tiny engine run of efficientnet.train.testing: one loop per step, a checkpoint per loop.
TINY = ["efficientnet.train.testing", "--iterations_per_loop=1"]


def command(module_args, **kwargs):
    return [sys.executable, "-m", *module_args]


def run(module_args, timeout=240, **kwargs):
    return subprocess.run(command(module_args), cwd=ROOT, env=ENV, capture_output=True,
                          text=True, timeout=timeout, **kwargs)


def start(module_args, **kwargs):
    return subprocess.Popen(command(module_args), cwd=ROOT, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def error_line(result) -> str:
    """The one `error:` line of a failed command; no traceback printed."""
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(lines) == 1, result.stderr[-3000:]
    return lines[0]


def wait_for(condition, process, timeout=120, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return
        assert process.poll() is None, f"exited {process.returncode} before {what}: " + \
            process.stderr.read()[-2000:]
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def kill(process):
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=30)


def digests(directory) -> dict:
    return {os.path.basename(p): hashlib.sha256(open(p, "rb").read()).hexdigest()
            for p in sorted(glob.glob(os.path.join(directory, "*-of-*")))}


def metrics_steps(model_dir) -> list[int]:
    with open(os.path.join(model_dir, "metrics.jsonl")) as handle:
        return [json.loads(line)["step"] for line in handle if '"kind": "train"' in line]


def last_step(model_dir) -> int:
    path = os.path.join(model_dir, "metrics.jsonl")
    steps = metrics_steps(model_dir) if os.path.exists(path) else []
    return steps[-1] if steps else -1


def live_processes_in_group(group: int) -> list[int]:
    """Pids of the process group `group` that are still running (zombies count as dead: an
    init that does not reap them is common in containers)."""
    alive = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            fields = open(stat).read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == group and fields[0] != "Z":
            alive.append(int(stat.split("/")[2]))
    return alive


def file_size_limit(limit_bytes):
    """preexec_fn: writes past `limit_bytes` fail with EFBIG (SIGXFSZ ignored), as on a full
    disk, without root."""
    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))
    return apply


def fashion_args(output, train_limit=3000, workers=2, shards=6):
    return ["tfrecord_tools", "fashion-mnist", f"--output_directory={output}",
            f"--train_limit={train_limit}", "--validation_limit=300",
            f"--train_shards={shards}", "--validation_shards=1", f"--num_workers={workers}",
            "--quiet"]


def png_header(width, height) -> bytes:
    """A small PNG file whose header announces `width` x `height` pixels (a decompression bomb's
    first bytes)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


# --- conversions ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reference_conversion(tmp_path_factory):
    if not os.path.exists(FASHION):
        pytest.skip("no Fashion-MNIST")
    output = str(tmp_path_factory.mktemp("reference") / "records")
    result = run(fashion_args(output))
    assert result.returncode == 0, result.stderr[-2000:]
    return output, digests(output)


@needs_fashion
def test_second_conversion_into_one_directory_exits_2_at_once(tmp_path):
    output = str(tmp_path / "records")
    first = start(fashion_args(output, train_limit=20000, workers=1, shards=4))
    lock = os.path.join(output, ".tfrecord_tools.lock")
    wait_for(lambda: os.path.exists(lock) and open(lock).read().strip() == str(first.pid),
             first, what="the first conversion's lock")
    began = time.time()
    second = run(fashion_args(output, train_limit=20000, workers=1, shards=4), timeout=60)
    assert second.returncode == 2 and time.time() - began < 30
    assert error_line(second).endswith(
        f"--output_directory {output} is in use by another process (pid {first.pid}): wait for "
        "it to finish, or use another directory")
    out, err = first.communicate(timeout=240)
    assert first.returncode == 0, err[-2000:]
    report = json.load(open(os.path.join(output, "conversion_report.json")))
    assert report["written"] == {"train": 20000, "validation": 300}


@needs_fashion
@pytest.mark.parametrize("point", ["locked", "one_shard_committed"])
def test_kill_9_during_conversion_then_rerun_gives_identical_shards(
        tmp_path, reference_conversion, point):
    reference, expected = reference_conversion
    output = str(tmp_path / "records")
    process = start(fashion_args(output), start_new_session=True)
    state = os.path.join(output, ".tfrecord_tools_state.json")

    def reached():
        if point == "locked":
            return os.path.exists(os.path.join(output, ".tfrecord_tools.lock"))
        try:
            return len(json.load(open(state))["shards"]) >= 1
        except (OSError, ValueError):
            return False

    wait_for(reached, process, what=point)
    kill(process)
    time.sleep(0.5)
    assert live_processes_in_group(process.pid) == []  # no worker outlives its parent
    rerun = run(fashion_args(output))
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert digests(output) == expected
    report = json.load(open(os.path.join(output, "conversion_report.json")))
    assert report["written"] == {"train": 3000, "validation": 300}
    assert not glob.glob(os.path.join(output, "*.incomplete"))


@needs_fashion
def test_full_disk_during_conversion_exits_1_and_the_rerun_completes(tmp_path,
                                                                     reference_conversion):
    _, expected = reference_conversion
    output = str(tmp_path / "records")
    full = run(fashion_args(output), preexec_fn=file_size_limit(100_000))
    assert full.returncode == 1
    line = error_line(full)
    assert "disk full (File too large)" in line and "re-run the same command" in line
    rerun = run(fashion_args(output))
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert digests(output) == expected


def test_conversion_refuses_bad_output_and_class_names(tmp_path):
    from PIL import Image

    images = tmp_path / "images"
    for name in ("cat", "dog\nbird"):
        (images / name).mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(images / "cat" / "a.jpg")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = run(["tfrecord_tools", "folder", f"--input_directory={images}",
                  f"--output_directory={tmp_path / 'out'}"], timeout=60)
    assert result.returncode == 2
    assert "class folder 'dog\\nbird' has a control character" in error_line(result)
    (images / "dog\nbird").rmdir()
    result = run(["tfrecord_tools", "folder", f"--input_directory={images}",
                  f"--output_directory={blocker}/out", "--train_shards=1",
                  "--validation_fraction=0"], timeout=60)
    assert result.returncode == 2
    line = error_line(result)
    assert f"--output_directory {blocker}/out cannot be created (Not a directory)" in line
    assert blocker.read_text() == "x"


# --- training ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_second_training_on_one_model_dir_exits_2_at_once(tmp_path):
    model_dir = str(tmp_path / "m")
    first = start(TINY + [f"--model_dir={model_dir}", "--train_steps=100000"])
    try:
        wait_for(lambda: last_step(model_dir) >= 1, first, timeout=180, what="step 1")
        second = run(TINY + [f"--model_dir={model_dir}", "--train_steps=10"], timeout=180)
        assert second.returncode == 2
        assert error_line(second).endswith(
            f"--model_dir {model_dir} is in use by another process (pid {first.pid}): wait for "
            "it to finish, or use another directory")
        assert first.poll() is None  # the first run goes on
    finally:
        kill(first)


@pytest.mark.slow
def test_kill_9_during_training_twice_then_the_same_final_step(tmp_path):
    model_dir = str(tmp_path / "m")
    args = TINY + [f"--model_dir={model_dir}", "--train_steps=60", "--save_checkpoints_steps=10"]
    for kill_after in (15, 37):  # mid-interval: the steps after the last checkpoint are lost
        process = start(args)
        wait_for(lambda: last_step(model_dir) >= kill_after, process, timeout=180,  # noqa: B023
                 what=f"step {kill_after}")
        kill(process)
    final = run(args)
    assert final.returncode == 0, final.stderr[-2000:]
    assert "Resuming from" in final.stdout
    assert json.loads(final.stdout.strip().splitlines()[-1])["step"] == 60
    assert metrics_steps(model_dir) == list(range(1, 61))  # no step twice, none missing


@pytest.mark.slow
def test_full_disk_during_a_checkpoint_save_leaves_no_partial_checkpoint(tmp_path):
    model_dir = str(tmp_path / "m")
    # 1000 classes: a 32 KB checkpoint, over the 20 KB limit (TensorFlow's own files stay under)
    args = TINY + [f"--model_dir={model_dir}", "--train_steps=4", "--num_label_classes=1000",
                   "--iterations_per_loop=2"]
    full = run(args, preexec_fn=file_size_limit(20_000))
    assert full.returncode == 1
    line = error_line(full)
    assert "disk full" in line and "ckpt-2_temp" in line and "File too large" in line
    assert not [n for n in os.listdir(model_dir) if n.startswith("ckpt-")]
    again = run(args)
    assert again.returncode == 0, again.stderr[-2000:]
    assert json.loads(again.stdout.strip().splitlines()[-1])["step"] == 4


@pytest.mark.slow
def test_truncated_and_garbage_checkpoints(tmp_path):
    model_dir = str(tmp_path / "m")
    args = TINY + [f"--model_dir={model_dir}", "--iterations_per_loop=2"]
    assert run(args + ["--train_steps=6"]).returncode == 0
    newest = os.path.join(model_dir, "ckpt-6.data-00000-of-00001")
    data = open(newest, "rb").read()
    open(newest, "wb").write(data[: len(data) // 2])
    (tmp_path / "m" / "ckpt-8_temp").mkdir()  # what a save cut short leaves
    resumed = run(args + ["--train_steps=8"])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "Skipped unreadable checkpoint(s) ckpt-6 (" in resumed.stdout
    assert f"Resuming from {model_dir}/ckpt-4 at step 4" in resumed.stdout
    assert metrics_steps(model_dir) == [2, 4, 6, 8]
    assert not os.path.exists(os.path.join(model_dir, "ckpt-8_temp"))

    # Another head: refused by config.json before anything is touched; without a config.json,
    # by the checkpoint that does not fit.
    config_json = os.path.join(model_dir, "config.json")
    saved = open(config_json, "rb").read()
    other_head = run(args + ["--train_steps=10", "--num_label_classes=7"])
    assert other_head.returncode == 2
    assert error_line(other_head) == (
        f"error: --num_label_classes=7 contradicts 4 of the run in {config_json}; "
        "use another --model_dir")
    assert open(config_json, "rb").read() == saved
    os.remove(config_json)
    other_head = run(args + ["--train_steps=10", "--num_label_classes=7"])
    assert other_head.returncode == 2
    assert f"checkpoint {model_dir}/ckpt-8 does not fit this model (" in error_line(other_head)
    assert not os.path.exists(config_json)  # written only once the restore succeeded
    assert metrics_steps(model_dir) == [2, 4, 6, 8]

    for index in glob.glob(os.path.join(model_dir, "ckpt-*.index")):
        open(index, "wb").write(b"garbage")
    before = {p: open(p, "rb").read() for p in glob.glob(os.path.join(model_dir, "ckpt-*"))}
    refused = run(args + ["--train_steps=10"])
    assert refused.returncode == 2
    assert f"No checkpoint in {model_dir} can be read: ckpt-8 (" in error_line(refused)
    assert {p: open(p, "rb").read() for p in before} == before


def test_garbage_config_json_is_one_line(tmp_path):
    model_dir = tmp_path / "m"
    model_dir.mkdir()
    (model_dir / "config.json").write_text("{not json")
    result = run(["efficientnet.main", "--mode=eval", f"--model_dir={model_dir}",
                  "--use_synthetic_data"], timeout=180)
    assert result.returncode == 2
    assert (f"{model_dir}/config.json is not the config.json of a training run (JSONDecodeError"
            in error_line(result))
    assert (model_dir / "config.json").read_text() == "{not json"


def test_test_sh_export_with_a_garbage_config_json_is_one_line(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    result = subprocess.run(["bash", os.path.join(ROOT, "test.sh"), "export"], capture_output=True,
                            text=True, timeout=60,
                            env={**ENV, "MODEL_DIR": str(tmp_path), "PYTHON": sys.executable})
    assert result.returncode == 2
    assert error_line(result).startswith(
        f"error: {tmp_path}/config.json is not the config.json of a training run (JSONDecodeError")


@needs_fashion
@pytest.mark.slow
def test_corrupt_shard_while_training_names_the_shard(tmp_path):
    data = str(tmp_path / "records")
    assert run(fashion_args(data, train_limit=400, workers=1, shards=2)).returncode == 0
    shard = os.path.join(data, "train-00001-of-00002")
    raw = bytearray(open(shard, "rb").read())
    raw[len(raw) // 2] ^= 0xFF
    open(shard, "wb").write(bytes(raw))
    result = run(["efficientnet.main", "--recipe=b0-imagenet-rmsprop-smoke", "--mode=train",
                  f"--model_dir={tmp_path / 'm'}", f"--data_dir={data}", "--train_steps=400",
                  "--iterations_per_loop=50", "--nouse_synthetic_data"], timeout=400)
    assert result.returncode == 1
    assert error_line(result).startswith(
        f"error: corrupt TFRecord shard {shard} (record ")


# --- model files and images -------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_tflite(tmp_path_factory):
    """A valid 8x8-input, 3-class TFLite classifier with a serving_default signature."""
    import numpy as np
    import tensorflow as tf

    class Tiny(tf.Module):
        def __init__(self):
            self.kernel = tf.Variable(np.linspace(-1, 1, 192 * 3, dtype=np.float32).reshape(192, 3))

        @tf.function(input_signature=[tf.TensorSpec([None, 8, 8, 3], tf.float32, name="images")])
        def serve(self, images):
            logits = tf.reshape(images, [-1, 192]) @ self.kernel / 255.0
            return {"probabilities": tf.nn.softmax(logits)}

    module = Tiny()
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [module.serve.get_concrete_function()], module)
    path = tmp_path_factory.mktemp("tflite") / "model.tflite"
    path.write_bytes(converter.convert())
    return path


def test_truncated_and_foreign_model_files_are_refused_without_a_crash(tmp_path, tiny_tflite,
                                                                       capsys):
    from efficientnet.infer import main

    data = tiny_tflite.read_bytes()
    truncated = tmp_path / "truncated.tflite"
    truncated.write_bytes(data[: len(data) * 2 // 3])
    # A fresh process: the native interpreter used to segfault on this file.
    result = run(["efficientnet.infer", f"--model={truncated}", "--benchmark"], timeout=120)
    assert result.returncode == 2  # not -11 (SIGSEGV)
    assert f"TFLite model {truncated} is truncated or corrupt" in error_line(result)

    foreign = tmp_path / "foreign.tflite"
    foreign.write_bytes(b"\x00" * 64)
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"\x08\x07garbage" * 10)
    saved = tmp_path / "saved_model"
    saved.mkdir()
    (saved / "saved_model.pb").write_bytes(b"garbage")
    for model, message in ((foreign, "is not a TFLite model"),
                           (onnx, f"ONNX model {onnx} is truncated or corrupt"),
                           (saved, f"Cannot load SavedModel {saved}")):
        assert main([f"--model={model}", "--benchmark"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and message in err and len(err.splitlines()) == 1
    assert tiny_tflite.read_bytes() == data


def test_infer_refuses_a_pixel_bomb_before_decoding_and_exits_1(tmp_path, tiny_tflite, capsys):
    from efficientnet.infer import main

    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_header(20000, 20000))  # 1.2 GB of pixels announced in 150 bytes
    result = run(["efficientnet.infer", f"--model={tiny_tflite}", f"--images={bomb}"],
                 timeout=120)
    assert result.returncode == 1
    assert f"skipped {bomb}: not a readable image (Image over the pixel limit" in result.stdout
    assert "None of the 1 image(s) could be read" in error_line(result)
    assert main([f"--model={tiny_tflite}", f"--images={bomb}", "--verbose"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err
    assert err.strip().splitlines()[-1].startswith("error: None of the 1 image(s)")


def test_serving_bytes_and_the_input_pipeline_refuse_a_pixel_bomb(tmp_path):
    import keras
    import tensorflow as tf

    from efficientnet.data import build_dataset
    from efficientnet.data.config import DataConfig
    from efficientnet.export.serving import build_serving_module
    from efficientnet.models import get_spec
    from tfrecord_tools.example import image_example
    from tfrecord_tools.tfrecord import TFRecordWriter

    spec = get_spec("efficientnet-b0")
    inputs = keras.Input((16, 16, 3))
    model = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(
        inputs)))
    module = build_serving_module(model, spec, 16)
    with pytest.raises(tf.errors.InvalidArgumentError, match="Image over the pixel limit"):
        module.serve_bytes(tf.constant([png_header(20000, 20000)]))

    shard = tmp_path / "validation-00000-of-00001"
    with TFRecordWriter(str(shard)) as writer:
        writer.write(image_example(png_header(30000, 20000), 20000, 30000, 1, "a", "a",
                                   "bomb.png", "PNG"))
    dataset = build_dataset(str(shard), False, 1, spec,
                            DataConfig(image_size=16, num_label_classes=3))
    with pytest.raises(tf.errors.InvalidArgumentError, match="Image over the pixel limit"):
        next(iter(dataset))


def test_memory_preflight_names_the_batch_flag():
    import keras

    from efficientnet.config import ConfigError
    from efficientnet.train.faults import activation_bytes_per_image, check_memory

    inputs = keras.Input((32, 32, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(8, 3, padding="same")(inputs))
    per_image = activation_bytes_per_image(model)
    assert per_image == 32 * 32 * 3 * 4 + 32 * 32 * 8 * 4  # the input and the conv output
    check_memory(model, 10, 32, available=per_image * 10)
    with pytest.raises(ConfigError, match=r"--train_batch_size=11 at 32 px needs at least .* "
                                          r"lower --train_batch_size \(at most about 10 fits\)"):
        check_memory(model, 11, 32, available=per_image * 10)


def test_eval_falls_back_to_the_newest_readable_checkpoint_and_touches_nothing(tmp_path):
    import tensorflow as tf

    from efficientnet.train import checkpointing

    step = tf.Variable(0, dtype=tf.int64)
    checkpoint = tf.train.Checkpoint(step=step, weights=tf.Variable(tf.zeros([256])))
    manager = checkpointing.make_manager(checkpoint, str(tmp_path), max_to_keep=3)
    for number in (1, 2, 3):
        step.assign(number)
        checkpointing.save(manager, number)
    newest = tmp_path / "ckpt-3.data-00000-of-00001"
    newest.write_bytes(newest.read_bytes()[:100])
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    said = []
    assert checkpointing.latest_readable_checkpoint(str(tmp_path), say=said.append) == \
        str(tmp_path / "ckpt-2")
    assert len(said) == 1 and said[0].startswith("Skipped unreadable checkpoint(s) ckpt-3 (")
    assert said[0].endswith(f"; using {tmp_path / 'ckpt-2'}")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before


def test_converter_refuses_a_jpeg_over_the_pixel_limit_without_decoding_it():
    import io

    from PIL import Image

    from tfrecord_tools.images import MAX_IMAGE_PIXELS, BadImage, prepare_image

    buffer = io.BytesIO()
    Image.new("RGB", (16, 16)).save(buffer, "JPEG")
    data = bytearray(buffer.getvalue())
    frame = data.find(b"\xff\xc0")  # baseline frame header: height, width at +5
    data[frame + 5:frame + 9] = struct.pack(">HH", 60000, 60000)
    with pytest.raises(BadImage, match=f"60000x60000 pixels is over the limit of "
                                       f"{MAX_IMAGE_PIXELS}"):
        prepare_image(bytes(data))
    assert prepare_image(buffer.getvalue())[1:] == (16, 16, False)
