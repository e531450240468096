"""`python -m efficientnet.main`: help, and bad flags ending in one clear error line."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_main(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "efficientnet.main", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def test_help_explains_flags():
    out = run_main("--help")
    assert out.returncode == 0
    assert "--iterations_per_loop" in out.stdout and "--train_batch_size" in out.stdout


@pytest.mark.parametrize("args, fragment", [
    (["--model_name=efficientnet-b99", "--use_synthetic_data"], "Unknown model name"),
    ([], "--data_dir is required"),
    (["--data_dir=/nonexistent/dir"], "does not exist"),
    (["--use_synthetic_data", "--num_cpu_devices=3", "--train_batch_size=4"], "not divisible"),
    (["--mode=eval", "--use_synthetic_data", "--image_size=32"], "No checkpoint"),
    (["--use_synthetic_data", "--precise_bn_batches=-2"], "--precise_bn_batches must be >= 0"),
    (["--use_synthetic_data", "--base_learning_rate=nan"],
     "--base_learning_rate must be a finite number, got nan"),
])
def test_bad_flags_give_one_clear_error(tmp_path, args, fragment):
    out = run_main(f"--model_dir={tmp_path / 'm'}", *args)
    assert out.returncode == 2, out.stderr
    assert fragment in out.stderr
    assert "Traceback" not in out.stderr
    assert out.stderr.strip().count("\n") == 0, out.stderr  # one line


def test_empty_data_dir_names_the_pattern(tmp_path):
    (tmp_path / "data").mkdir()
    out = run_main(f"--model_dir={tmp_path / 'm'}", f"--data_dir={tmp_path / 'data'}")
    assert out.returncode == 2 and "train-*" in out.stderr
