"""Every command of README.md's ```bash blocks runs in a test, as written.

The commands run from a sandbox folder that looks like a user's checkout (the scripts, rank
tables and `.venv` linked in), with the absolute placeholder paths (/data, /ckpts) moved under
it and filled with small fixtures: 1,024 + 128 ImageNet-layout JPEGs, a five-class flower
folder, a TF1 EfficientNet-B0 checkpoint. Training commands get a few flags appended (later
flags win) so that they take seconds: two steps of four 32 px images. The few commands that run
elsewhere are listed in ELSEWHERE with the test that runs them.
"""

import ast
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")
# Appended to the README's training commands: its flags stay, these win.
SECONDS_LONG = ["--train_steps=2", "--iterations_per_loop=2", "--train_batch_size=4",
                "--eval_batch_size=4", "--image_size=32", "--mode=train"]
SYNSETS = {"n01440764": "tench, Tinca tinca", "n01443537": "goldfish, Carassius auratus"}
FLOWERS = ("daisy", "dandelion", "roses", "sunflowers", "tulips")

pytestmark = pytest.mark.xdist_group("readme")  # one worker: the tests share the sandbox

# README command -> the test of this file that runs it.
HERE = {
    "python -m tfrecord_tools imagenet --train_directory=/data/ILSVRC/train "
    "--validation_directory=/data/ILSVRC/val --output_directory=/data/imagenet "
    "--labels_file=synsets.txt --imagenet_metadata_file=synset_words.txt --train_shards=1024 "
    "--validation_shards=128 --num_workers=8": "test_convert_train_evaluate_export_infer",
    "python -m tfrecord_tools folder --input_directory=/data/flowers "
    "--output_directory=/data/flowers_tfr --validation_fraction=0.1 --train_shards=8 "
    "--validation_shards=2 --num_workers=2": "test_fine_tune_and_convert_a_tf1_checkpoint",
    "python -m tfrecord_tools fashion-mnist --output_directory=/data/fmnist":
        "test_fashion_mnist_conversion_and_verify",
    "python -m tfrecord_tools verify /data/fmnist": "test_fashion_mnist_conversion_and_verify",
    "DATA_DIR=/data/imagenet MODEL_DIR=result/1p/0 bash run_1p.sh --train_batch_size=256":
        "test_convert_train_evaluate_export_infer",
    "python -m rank_tables to-tf-config rank_tables/8p.json --rank 3": "test_rank_table_commands",
    "MODEL_DIR=result/1p/0 DATA_DIR=/data/imagenet bash test.sh eval":
        "test_convert_train_evaluate_export_infer",
    "MODEL_DIR=result/flowers DATA_DIR=/data/flowers_tfr bash run_1p.sh --num_label_classes=5 "
    "--restore_path=/ckpts/efficientnet-b0 --restore_exclude=head/dense":
        "test_fine_tune_and_convert_a_tf1_checkpoint",
    "python -m efficientnet.convert --model_name=efficientnet-b0 "
    "--checkpoint=/ckpts/efficientnet-b0/model.ckpt --output_dir=/ckpts/b0-native":
        "test_fine_tune_and_convert_a_tf1_checkpoint",
    "MODEL_DIR=result/1p/0 EXPORT_DIR=export bash test.sh export":
        "test_convert_train_evaluate_export_infer",
    "python -m efficientnet.export --model_name=efficientnet-b0 --model_dir=result/1p/0 "
    "--export_dir=export --formats=saved_model,tflite,tflite_fp16,tflite_int8,onnx "
    "--data_dir=/data/imagenet": "test_convert_train_evaluate_export_infer",
    "python -m efficientnet.infer --model=export/model_fp32.tflite --images=photos/":
        "test_convert_train_evaluate_export_infer",
    "RANK_TABLE=rank_tables/16p.json MODEL_DIR=/shared/b0 DATA_DIR=/shared/imagenet "
    "bash run_8p.sh": "test_rank_table_commands",
    "make install TF_EXTRA=gpu": "test_gpu_commands",
    ".venv/bin/python -c \"import tensorflow as tf; "
    "print(tf.config.list_physical_devices('GPU'))\"": "test_gpu_commands",
    "bash run_1p.sh --data_dir=/data/imagenet --precision=mixed_float16": "test_gpu_commands",
}
# README command -> where it runs instead, and why not here.
ELSEWHERE = {
    "make demo": "tests/test_demo.py::test_demo_then_test_sh_export_and_infer runs "
                 "`python -m efficientnet.demo`, what `make demo` runs once installed",
    "make test": ".ci/run runs it on every change",
    "DATA_DIR=/data/imagenet bash run_8p.sh":
        "tests/test_scripts.py::test_run_8p_two_ranks_and_failure_exit runs it with RANK_SIZE=2 "
        "(eight training processes do not fit a 2-core test machine)",
}


def readme_commands(text: str | None = None) -> list[str]:
    """The commands of README.md's ```bash blocks: continuation lines joined, comments dropped."""
    text = (ROOT / "README.md").read_text() if text is None else text
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in re.sub(r"\\\n\s*", "", block).splitlines():
            command = "" if line.lstrip().startswith("#") else line.split(" #", 1)[0].strip()
            if command:
                commands.append(command)
    return commands


def readme(command: str) -> str:
    """`command`, after checking the README still shows it."""
    assert command in readme_commands(), f"README.md no longer shows: {command}"
    return command


def _jpeg(path: Path, seed: int, size=(16, 16)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, "JPEG")


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory) -> Path:
    """A user's checkout: scripts, rank tables and .venv linked in, the README's fixtures."""
    home = tmp_path_factory.mktemp("readme")
    for name in ("run_1p.sh", "run_8p.sh", "test.sh", "rank_tables"):
        (home / name).symlink_to(ROOT / name)
    (home / ".venv").symlink_to(sys.prefix)
    seed = 0
    for split, count in (("train", 512), ("val", 64)):  # 1,024 and 128 images
        for synset in SYNSETS:
            for index in range(count):
                _jpeg(home / "data" / "ILSVRC" / split / synset / f"{synset}_{index}.JPEG", seed)
                seed += 1
    (home / "synsets.txt").write_text("\n".join(SYNSETS) + "\n")
    (home / "synset_words.txt").write_text(
        "".join(f"{synset}\t{words}\n" for synset, words in SYNSETS.items()))
    for flower in FLOWERS:
        for index in range(8):
            _jpeg(home / "data" / "flowers" / flower / f"{index}.jpg", seed, (20, 24))
            seed += 1
    for index in range(2):
        _jpeg(home / "photos" / f"photo{index}.jpg", seed + index, (40, 30))
    return home


def sh(command: str, home: Path, extra=(), env=None, timeout=600) -> subprocess.CompletedProcess:
    """Runs README `command` with bash in `home`, /data and /ckpts moved under it, `extra`
    appended; fails the test, with the output, when it exits non-zero."""
    local = re.sub(r"(?<![\w.])/(data|ckpts)/", lambda m: f"{home}/{m.group(1)}/", command)
    proc = subprocess.run(
        ["bash", "-c", " ".join([local, *extra])], cwd=home, capture_output=True, text=True,
        timeout=timeout, env={**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(ROOT),
                              # `python` is this interpreter, as in an activated .venv
                              "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
                              **(env or {})})
    assert proc.returncode == 0, f"{command}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def test_every_readme_command_is_run_by_a_test():
    commands = readme_commands()
    assert len(commands) == len(set(commands)), "a README command is shown twice"
    assert set(commands) == set(HERE) | set(ELSEWHERE), (
        f"not run by a test: {sorted(set(commands) - set(HERE) - set(ELSEWHERE))}; "
        f"no longer in README.md: {sorted(set(HERE) | set(ELSEWHERE) - set(commands))}")
    assert set(HERE.values()) <= set(globals()), "HERE names a test this file does not have"
    for where in ELSEWHERE.values():
        if "::" in where:
            path, name = where.split(" ", 1)[0].split("::")
            tree = ast.parse((ROOT / path).read_text())
            assert name in {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}


def test_readme_commands_are_read_as_a_shell_reads_them():
    text = ("```bash\n# a comment\nmake x   # trailing\npython -m a --b=1 \\\n    --c=2\n```\n"
            "```python\nnot = 'a command'\n```\n")
    assert readme_commands(text) == ["make x", "python -m a --b=1 --c=2"]


def test_models_snippet():
    snippet = re.search(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    scope: dict = {}
    exec(snippet, scope)  # noqa: S102 - the README's own example
    assert len(scope["models"].list_models()) == 30 and "30 names" in snippet
    assert scope["spec"].name == "efficientnet-b0"
    assert scope["model"].output_shape == (None, 10)


@pytest.mark.slow
def test_convert_train_evaluate_export_infer(sandbox):
    convert = sh(readme(next(c for c in HERE if "tfrecord_tools imagenet" in c)), sandbox)
    report = json.loads((sandbox / "data" / "imagenet" / "conversion_report.json").read_text())
    assert report["written"] == {"train": 1024, "validation": 128}, convert.stdout
    assert len(list((sandbox / "data" / "imagenet").glob("train-*-of-01024"))) == 1024
    assert (sandbox / "data" / "imagenet" / "validation-00127-of-00128").exists()

    train = sh(readme("DATA_DIR=/data/imagenet MODEL_DIR=result/1p/0 bash run_1p.sh "
                      "--train_batch_size=256"), sandbox, SECONDS_LONG)
    model_dir = sandbox / "result" / "1p" / "0"
    assert "step: 2/2" in train.stdout and (model_dir / "train.log").exists()
    evaluated = sh(readme("MODEL_DIR=result/1p/0 DATA_DIR=/data/imagenet bash test.sh eval"),
                   sandbox)
    results = json.loads((model_dir / "eval_results.json").read_text())
    assert results["num_images"] == 128 and results["global_step"] == 2, evaluated.stdout

    sh(readme("MODEL_DIR=result/1p/0 EXPORT_DIR=export bash test.sh export"), sandbox)
    assert json.loads((sandbox / "export" / "export_report.json").read_text())["ok"] is True
    sh(readme(next(c for c in HERE if c.startswith("python -m efficientnet.export"))), sandbox)
    exported = json.loads((sandbox / "export" / "export_report.json").read_text())
    assert set(exported["formats"]) == {"saved_model", "tflite", "tflite_fp16", "tflite_int8",
                                        "onnx"}
    assert exported["ok"] is True and exported["keras"]["num_images"] == 128
    infer = sh(readme("python -m efficientnet.infer --model=export/model_fp32.tflite "
                      "--images=photos/"), sandbox)
    # The export read the run's 32 px from its config.json; the ImageNet head has 1000 classes
    # (the fixture's two synsets name only two of them, so classes print as numbers).
    assert "tflite, 32x32 input, 1000 classes" in infer.stdout, infer.stdout
    named = [line for line in infer.stdout.splitlines() if line.startswith("photos/photo")]
    assert len(named) == 2 and all(line.count(" (0.") == 5 for line in named), infer.stdout

    # The precision flag of the GPU section, on the same data (CPU here).
    mixed = sh(readme("bash run_1p.sh --data_dir=/data/imagenet --precision=mixed_float16"),
               sandbox, [*SECONDS_LONG, "--model_dir=result/mixed"])
    assert "step: 2/2" in mixed.stdout
    config = json.loads((sandbox / "result" / "mixed" / "config.json").read_text())
    assert config["train"]["precision"] == "mixed_float16"


@pytest.mark.slow
def test_fine_tune_and_convert_a_tf1_checkpoint(sandbox):
    from efficientnet import models
    from tests.test_transfer import write_tf1_checkpoint

    sh(readme(next(c for c in HERE if "tfrecord_tools folder" in c)), sandbox)
    labels = (sandbox / "data" / "flowers_tfr" / "labels.txt").read_text().split()
    assert labels == list(FLOWERS)
    checkpoint = sandbox / "ckpts" / "efficientnet-b0"
    checkpoint.mkdir(parents=True)
    write_tf1_checkpoint(checkpoint / "model.ckpt", models.build("efficientnet-b0", 1000, 224))

    sh(readme(next(c for c in HERE if "--restore_path=/ckpts" in c)), sandbox, SECONDS_LONG)
    restored = json.loads((sandbox / "result" / "flowers" / "restore_report.json").read_text())
    assert restored["format"] == "tf1" and sorted(restored["excluded"]) == [
        "head_dense/bias", "head_dense/kernel"]
    assert not restored["missing_in_checkpoint"] and len(restored["restored"]) == 309

    sh(readme(next(c for c in HERE if c.startswith("python -m efficientnet.convert"))), sandbox)
    assert (sandbox / "ckpts" / "b0-native" / "checkpoint").exists()


def test_rank_table_commands(sandbox):
    config = json.loads(sh(readme("python -m rank_tables to-tf-config rank_tables/8p.json "
                                  "--rank 3"), sandbox).stdout)
    assert config["task"] == {"type": "worker", "index": 3}
    assert len(config["cluster"]["worker"]) == 8
    # The two-host example table, on a host that is neither of its servers: refused at once.
    command = readme(next(c for c in HERE if "16p.json" in c))
    with pytest.raises(AssertionError, match="set SERVER_ID to this host's server_id"):
        sh(command, sandbox)
    assert not (sandbox / "result").joinpath("8p").exists()
    ranks = subprocess.run([sys.executable, "-m", "rank_tables", "local-ranks",
                            "rank_tables/16p.json"], cwd=ROOT, capture_output=True, text=True,
                           env={**os.environ, "SERVER_ID": "10.0.0.2"})
    assert ranks.stdout.split() == [str(rank) for rank in range(8, 16)]


def test_gpu_commands(sandbox):
    # `make install TF_EXTRA=gpu` installs the gpu extra, which pins TensorFlow with CUDA.
    plan = subprocess.run(["make", "-n", "-B", "install", "TF_EXTRA=gpu"], cwd=ROOT,
                          capture_output=True, text=True, check=True).stdout
    readme("make install TF_EXTRA=gpu")
    assert 'pip install -q -e ".[gpu,dev,export,weights]"' in plan
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    assert extras["gpu"][0] == "tensorflow[and-cuda]==2.21.0; sys_platform == 'linux'"
    devices = sh(readme(next(c for c in HERE if c.startswith(".venv/bin/python -c"))), sandbox)
    assert devices.stdout.strip() == "[]"  # no GPU on the test machine


@pytest.mark.slow
@pytest.mark.skipif(not FASHION_MNIST.exists(),
                    reason="needs the Debian package dataset-fashion-mnist (make install)")
def test_fashion_mnist_conversion_and_verify(sandbox):
    sh(readme("python -m tfrecord_tools fashion-mnist --output_directory=/data/fmnist"), sandbox)
    report = json.loads((sandbox / "data" / "fmnist" / "conversion_report.json").read_text())
    assert report["written"] == {"train": 60000, "validation": 10000} and not report["skipped"]
    verified = sh(readme("python -m tfrecord_tools verify /data/fmnist"), sandbox).stdout
    histogram = ", ".join(f"{label}: 6000" for label in range(1, 11))
    assert "train: 60,000 records" in verified and f"histogram (label: records): {histogram}" \
        in verified and "validation: 10,000 records" in verified and verified.endswith("OK\n")
