"""run_1p.sh, test.sh eval and run_8p.sh (2 ranks) on synthetic data with the smoke recipe."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMOKE = ["--recipe=b0-imagenet-rmsprop-smoke", "--mode=train", "--train_steps=2"]


def bash(script, *args, env=None, timeout=420):
    return subprocess.run(
        ["bash", os.path.join(ROOT, script), *args], capture_output=True, text=True,
        timeout=timeout, env={**os.environ, "PYTHON": sys.executable, **(env or {})})


def test_scripts_are_valid_bash():
    for script in ("run_1p.sh", "run_8p.sh", "test.sh"):
        assert subprocess.run(["bash", "-n", os.path.join(ROOT, script)]).returncode == 0
    out = bash("test.sh", "nonsense")
    assert out.returncode == 2 and "usage" in out.stderr


@pytest.mark.slow
def test_run_1p_then_test_sh_eval(tmp_path):
    model_dir = str(tmp_path / "1p")
    out = bash("run_1p.sh", *SMOKE, env={"MODEL_DIR": model_dir})
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "step: 2/2" in out.stdout
    assert os.path.exists(os.path.join(model_dir, "train.log"))
    evaluated = bash("test.sh", "eval", env={"MODEL_DIR": model_dir})
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    assert "top-1" in evaluated.stdout and "top-5" in evaluated.stdout
    assert os.path.exists(os.path.join(model_dir, "eval_results.json"))


@pytest.mark.slow
def test_run_8p_two_ranks_and_failure_exit(tmp_path):
    import socket

    sock = socket.socket()
    sock.bind(("localhost", 0))
    port = sock.getsockname()[1]
    sock.close()
    env = {"RANK_SIZE": "2", "RESULT_DIR": str(tmp_path / "8p"), "BASE_PORT": str(port)}
    out = bash("run_8p.sh", *SMOKE, env=env)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert os.path.exists(tmp_path / "8p" / "0" / "checkpoint")
    assert "step: 2/2" in open(tmp_path / "8p" / "0" / "train.log").read()
    bad = bash("run_8p.sh", "--model_name=nope", env=env, timeout=240)
    assert bad.returncode != 0 and "failed" in bad.stderr
