"""<model_dir>/config.json: round trip, files of earlier releases, eval/export/test.sh read it,
and a resume that contradicts it is refused before anything is written."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from efficientnet.config import ALIASES, ConfigError, Experiment, get_experiment, run_file
from efficientnet.train.flags import config_from_flags

ROOT = Path(__file__).resolve().parents[1]

OLD_B1_NAME = next(old for old, new in ALIASES.items() if new == "b1-imagenet-rmsprop-linear")
# config.json as the flat RunConfig of the previous release wrote it (every key it had).
OLD_FORMAT = {
    "model_name": "efficientnet-b1", "recipe": OLD_B1_NAME, "mode": "train_and_eval",
    "data_dir": "/data/imagenet", "model_dir": "/runs/b1", "export_dir": None,
    "use_synthetic_data": False, "train_batch_size": 2048, "eval_batch_size": 1024,
    "train_steps": 218750, "iterations_per_loop": 625, "steps_per_eval": 6250,
    "num_train_images": 1281167, "num_eval_images": 50000, "num_label_classes": 1001,
    "image_size": 240, "optimizer": "rmsprop", "base_learning_rate": 0.15,
    "lr_reference_batch": 2048, "lr_schedule": "linear", "lr_decay_factor": 0.97,
    "lr_decay_epochs": 2.4, "warmup_epochs": 2.0, "min_learning_rate": 5e-05, "momentum": 0.9,
    "rmsprop_decay": 0.9, "rmsprop_epsilon": 0.001, "nesterov": False, "clip_global_norm": 0.0,
    "weight_decay": 1e-05, "label_smoothing": 0.1, "moving_average_decay": 0.9999,
    "dropout_rate": None, "drop_connect_rate": None, "augment_name": "autoaugment",
    "randaug_num_layers": 2, "randaug_magnitude": 10, "mixup_alpha": 0.0, "cutmix_alpha": 0.0,
    "resize_method": "bicubic_tf1", "shuffle_buffer": None, "cache": False, "crop_padding": 0,
    "min_crop_area": 0.08, "precision": "float32", "xla": "auto", "seed": 0,
    "deterministic": False, "keep_checkpoint_max": 5, "save_checkpoints_steps": 0,
    "eval_watch": False, "eval_timeout": 3600.0, "precise_bn_batches": 0, "num_cpu_devices": 0,
    "rank_table": None, "restore_path": None, "restore_exclude": ["head/dense"],
    "restore_prefer_ema": True, "freeze_pattern": None,
}


def _experiment(tmp_path, **overrides) -> Experiment:
    values = dict(model_dir=str(tmp_path / "run"), use_synthetic_data=True, image_size=64,
                  num_label_classes=7, restore_exclude=("head/dense", "stem"), crop_padding=0)
    return get_experiment("b3-imagenet-sgd-cosine", **{**values, **overrides})


def test_round_trip_keeps_every_field(tmp_path):
    experiment = _experiment(tmp_path, dropout_rate=0.3, augment_name="randaugment")
    path = run_file.write(experiment)
    assert path == str(tmp_path / "run" / "config.json")
    document = json.loads(Path(path).read_text())
    assert document["format_version"] == 2 and document["name"] == "b3-imagenet-sgd-cosine"
    assert document["model"]["num_label_classes"] == 7
    assert document["transfer"]["restore_exclude"] == ["head/dense", "stem"]
    assert run_file.read(experiment.train.model_dir) == experiment


def test_a_config_json_of_the_previous_release_is_still_read(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(OLD_FORMAT, indent=2))
    saved = run_file.read(str(tmp_path))
    assert saved.name == OLD_B1_NAME
    assert saved.flat() == {k: (tuple(v) if isinstance(v, list) else v)
                            for k, v in OLD_FORMAT.items() if k != "recipe"}
    assert run_file.saved_export_flags(str(tmp_path)) == [
        "--model_name=efficientnet-b1", "--num_label_classes=1001", "--image_size=240",
        "--crop_padding=0", "--resize_method=bicubic_tf1"]


def test_keys_of_a_newer_release_are_ignored(tmp_path):
    document = {**_experiment(tmp_path).to_dict(), "format_version": 3, "future": {"x": 1}}
    document["model"]["future_field"] = 5
    (tmp_path / "config.json").write_text(json.dumps(document))
    assert run_file.read(str(tmp_path)).model.num_label_classes == 7


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"num_label_classes": 0}'])
def test_an_unreadable_config_json_is_one_error_naming_the_file(tmp_path, content):
    (tmp_path / "config.json").write_text(content)
    with pytest.raises(ConfigError) as info:
        run_file.read(str(tmp_path))
    assert str(tmp_path / "config.json") in str(info.value) and "\n" not in str(info.value)


def test_no_config_json_reads_as_none(tmp_path):
    assert run_file.read(str(tmp_path)) is None and run_file.read(None) is None
    assert run_file.saved_export_flags(str(tmp_path)) == []


def test_eval_inherits_the_model_settings_unless_flags_give_them(tmp_path):
    run_file.write(_experiment(tmp_path, data_dir="/data/x", use_synthetic_data=False))
    model_dir = tmp_path / "run"
    config = config_from_flags(["--mode=eval", f"--model_dir={model_dir}"])
    assert (config.model.model_name, config.model.num_label_classes, config.model.image_size,
            config.data.data_dir) == ("efficientnet-b3", 7, 64, "/data/x")
    config = config_from_flags(["--mode=eval", f"--model_dir={model_dir}", "--image_size=32",
                                "--use_synthetic_data"])
    assert (config.model.image_size, config.data.use_synthetic_data) == (32, True)
    # Training does not inherit: its flags are what it will write.
    train = config_from_flags([f"--model_dir={model_dir}", "--use_synthetic_data"])
    assert train.model.model_name == "efficientnet-b0"


@pytest.mark.parametrize("flag, message", [
    ("--model_name=efficientnet-b1",
     "--model_name=efficientnet-b1 contradicts efficientnet-b3 of the run in"),
    ("--num_label_classes=10", "--num_label_classes=10 contradicts 7 of the run in"),
    ("--image_size=96", "--image_size=96 contradicts 64 of the run in"),
])
def test_check_resume_refuses_a_contradicting_model(tmp_path, flag, message):
    saved = _experiment(tmp_path)
    run_file.write(saved)
    name, value = flag[2:].split("=")
    changed = saved.override(**{name: int(value) if value.isdigit() else value})
    with pytest.raises(ConfigError) as info:
        run_file.check_resume(changed)
    text = str(info.value)
    assert text.startswith(message) and text.endswith("use another --model_dir"), text
    assert str(tmp_path / "run" / "config.json") in text
    run_file.check_resume(saved.override(train_steps=5, base_learning_rate=0.5))  # may change


def test_a_refused_resume_exits_2_and_leaves_the_run_byte_identical(tmp_path):
    """The CLI refuses before anything is written: config.json and every other file of the
    run stay as they were."""
    model_dir = tmp_path / "run"
    run_file.write(_experiment(tmp_path))
    (model_dir / "ckpt-1.index").write_bytes(b"stand-in")
    before = {p.name: p.read_bytes() for p in model_dir.iterdir()}
    out = subprocess.run(
        [sys.executable, "-m", "efficientnet.main", f"--model_dir={model_dir}",
         "--use_synthetic_data", "--model_name=efficientnet-b0", "--num_label_classes=7",
         "--image_size=64"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip() == (
        f"error: --model_name=efficientnet-b0 contradicts efficientnet-b3 of the run in "
        f"{model_dir / 'config.json'}; use another --model_dir")
    assert {p.name: p.read_bytes() for p in model_dir.iterdir()} == before


def test_export_flags_cli_prints_one_flag_per_line(tmp_path):
    run_file.write(_experiment(tmp_path, resize_method="bilinear"))
    out = subprocess.run(
        [sys.executable, "-m", "efficientnet.config.run_file", "export-flags",
         str(tmp_path / "run")], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "--model_name=efficientnet-b3", "--num_label_classes=7", "--image_size=64",
        "--crop_padding=0", "--resize_method=bilinear"]
    bad = subprocess.run([sys.executable, "-m", "efficientnet.config.run_file", "nope"],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "usage" in bad.stderr


_FAKE_PYTHON = """#!/usr/bin/env bash
# Runs everything with the real interpreter except the exporter, whose arguments it prints.
if [ "$1" = "-m" ] && [ "$2" = "efficientnet.export" ]; then shift 2; printf '%s\\n' "$@"; exit 0; fi
exec {python} "$@"
"""


def test_test_sh_export_reads_config_json_and_later_flags_win(tmp_path):
    run_file.write(_experiment(tmp_path))
    fake = tmp_path / "python"
    fake.write_text(_FAKE_PYTHON.format(python=sys.executable))
    fake.chmod(0o755)
    env = {**os.environ, "PYTHON": str(fake), "MODEL_DIR": str(tmp_path / "run"),
           "EXPORT_DIR": str(tmp_path / "export"), "MODEL_NAME": "efficientnet-b3"}
    out = subprocess.run(["bash", str(ROOT / "test.sh"), "export", "--image_size=80"],
                         capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    args = out.stdout.splitlines()
    assert args[:5] == ["--model_name=efficientnet-b3", "--num_label_classes=7",
                        "--image_size=64", "--crop_padding=0", f"--model_dir={tmp_path / 'run'}"]
    assert args[-1] == "--image_size=80"  # the user's flag comes last: argparse keeps it
    assert f"--export_dir={tmp_path / 'export'}" in args
    # Without a config.json only the user's settings go through.
    env["MODEL_DIR"] = str(tmp_path / "empty")
    out = subprocess.run(["bash", str(ROOT / "test.sh"), "export"], capture_output=True,
                         text=True, timeout=60, env=env)
    assert out.returncode == 0 and out.stdout.splitlines()[0] == f"--model_dir={tmp_path / 'empty'}"
    # A garbage config.json stops test.sh with the reader's one line.
    (tmp_path / "run" / "config.json").write_text("{garbage")
    env["MODEL_DIR"] = str(tmp_path / "run")
    out = subprocess.run(["bash", str(ROOT / "test.sh"), "export"], capture_output=True,
                         text=True, timeout=60, env=env)
    assert out.returncode == 2
    assert out.stderr.startswith(f"error: {tmp_path / 'run' / 'config.json'} is not the config.json "
                                 "of a training run (JSONDecodeError: ")


def test_config_json_is_written_only_after_the_restore_succeeded(tmp_path):
    from efficientnet.train import testing, trainer
    from efficientnet.train.restore import RestoreError

    garbage = tmp_path / "model.ckpt"
    garbage.write_bytes(b"not a checkpoint")
    config = Experiment().override(
        model_dir=str(tmp_path / "run"), use_synthetic_data=True, image_size=16,
        num_label_classes=4, train_batch_size=8, train_steps=2, iterations_per_loop=2,
        mode="train", restore_path=str(garbage))
    fn = testing.learnable_dataset_fn(True, 8, 16, 4)
    with pytest.raises(RestoreError):
        trainer.run(config, model_fn=testing.tiny_model_fn, train_dataset_fn=fn)
    assert not (tmp_path / "run" / "config.json").exists()
    assert not (tmp_path / "run" / "restore_report.json").exists()
    trainer.run(config.override(restore_path=None), model_fn=testing.tiny_model_fn,
                train_dataset_fn=fn)
    assert run_file.read(str(tmp_path / "run")) == config.override(restore_path=None)
