"""kill -9 during training, start again: resumes from the last checkpoint to the requested step."""

import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARGS = ["--train_steps=300", "--iterations_per_loop=1", "--deterministic"]


def start(model_dir):
    return subprocess.Popen(
        [sys.executable, "-m", "efficientnet.train.testing", f"--model_dir={model_dir}", *ARGS],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for_step(model_dir, step, process, timeout=180):
    metrics = os.path.join(model_dir, "metrics.jsonl")
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert process.poll() is None, process.stdout.read()[-2000:]
        if os.path.exists(metrics):
            lines = open(metrics).read().splitlines()
            if lines and json.loads(lines[-1])["step"] >= step:
                return
        time.sleep(0.2)
    raise AssertionError(f"step {step} not reached")


@pytest.mark.slow
def test_resume_after_sigkill_reaches_requested_step(tmp_path):
    model_dir = str(tmp_path / "m")
    first = start(model_dir)
    try:
        wait_for_step(model_dir, 20, first)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    killed_at = max(json.loads(line)["step"] for line in open(os.path.join(model_dir,
                                                                           "metrics.jsonl")))
    assert killed_at < 300
    second = start(model_dir)
    out, _ = second.communicate(timeout=300)
    assert second.returncode == 0, out[-3000:]
    assert "Resuming from" in out
    resumed_from = int(out.split("Resuming from")[1].split("at step")[1].split()[0])
    assert killed_at - 1 <= resumed_from <= killed_at + 1  # loses at most one save interval
    assert json.loads(out.strip().splitlines()[-1])["step"] == 300
    # The killed run's records after the checkpoint are dropped: each step once, all finite.
    records = [json.loads(line) for line in open(os.path.join(model_dir, "metrics.jsonl"))]
    train = [r for r in records if r["kind"] == "train"]
    assert [r["step"] for r in train] == list(range(1, 301))
    assert all(math.isfinite(r["loss"]) for r in train)


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_exits_143(tmp_path):
    model_dir = str(tmp_path / "m")
    process = subprocess.Popen(
        [sys.executable, "-m", "efficientnet.train.testing", f"--model_dir={model_dir}",
         "--train_steps=1000000", "--iterations_per_loop=1", "--save_checkpoints_steps=100000"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_for_step(model_dir, 3, process, timeout=240)
    process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=120)
    assert process.returncode == 143, out[-2000:]
    from efficientnet.train import checkpointing

    step = checkpointing.read_step(model_dir)
    assert step >= 3
    assert f"SIGTERM received: checkpoint saved at step {step}; stopping" in out
    last = json.loads(open(os.path.join(model_dir, "metrics.jsonl")).read().splitlines()[-1])
    assert last["step"] == step  # the checkpoint holds the last step trained
