"""MirroredStrategy (2 logical CPUs) and MultiWorkerMirroredStrategy (2 local processes) give the
loss of one device on the same global batch (the tiny BN-free model of efficientnet.train.testing)."""

import json
import os
import socket
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def helper(model_dir, *args, env=None, timeout=240):
    return subprocess.Popen(
        [sys.executable, "-m", "efficientnet.train.testing", f"--model_dir={model_dir}", *args],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, **(env or {})})


def losses_of(process, timeout=240):
    out, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, out[-3000:]
    return json.loads(out.strip().splitlines()[-1])


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.fixture(scope="module")
def single_device(tmp_path_factory):
    return losses_of(helper(tmp_path_factory.mktemp("one") / "m"))


def test_mirrored_two_cpu_devices_match_one_device(tmp_path, single_device):
    mirrored = losses_of(helper(tmp_path / "m", "--num_cpu_devices=2"))
    assert mirrored["step"] == single_device["step"] == 6
    assert mirrored["losses"] == pytest.approx(single_device["losses"], rel=1e-4)


def test_batch_must_divide_over_replicas(tmp_path):
    out, _ = helper(tmp_path / "m", "--num_cpu_devices=3").communicate(timeout=240)
    assert "not divisible by the 3 replicas" in out


@pytest.mark.slow
def test_multi_worker_two_processes_match_one_device(tmp_path, single_device):
    ports = free_ports(2)
    workers = [f"localhost:{p}" for p in ports]
    model_dir = tmp_path / "m"
    processes = [
        helper(model_dir, env={"TF_CONFIG": json.dumps(
            {"cluster": {"worker": workers}, "task": {"type": "worker", "index": i}})})
        for i in range(2)]
    try:
        results = [losses_of(p) for p in processes]
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
    for result in results:
        assert result["losses"] == pytest.approx(single_device["losses"], rel=1e-4)
    assert sorted(os.listdir(model_dir)).count("checkpoint") == 1
    assert not os.path.exists(model_dir / ".workers")  # non-chief copies cleaned up
