"""run_8p.sh on a two-server rank table, each server launched as its own "host" (SERVER_ID) on
this machine: the same final step and loss as one host running both ranks (same global batch),
and kill -9 of one host followed by a restart of both resumes from the last checkpoint."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from tests.test_scripts import SMOKE

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def table(path, servers):
    """A rank table with one device per server; device ids differ so that both "hosts" of this
    machine get their own port (a TensorFlow server listens on every address of its host)."""
    instances = [{"server_id": server, "devices": [{"device_id": str(i)}]}
                 for i, server in enumerate(servers)]
    if len(set(servers)) == 1:  # one host: both devices on one instance
        instances = [{"server_id": servers[0],
                      "devices": [{"device_id": str(i)} for i in range(len(servers))]}]
    path.write_text(json.dumps({"group_list": [{"instance_list": instances}]}))
    return str(path)


def free_base_port():
    """A base port with base and base + 1 free."""
    for _ in range(50):
        with socket.socket() as first:
            first.bind(("", 0))
            port = first.getsockname()[1]
            with socket.socket() as second:
                try:
                    second.bind(("", port + 1))
                    return port
                except OSError:
                    continue
    raise RuntimeError("no two consecutive free ports")


def host(rank_table, result_dir, server_id=None, args=(), port=None):
    """`bash run_8p.sh` as one host would run it (own session, so kill -9 takes all of it)."""
    env = {**os.environ, "PYTHON": sys.executable, "RANK_TABLE": rank_table,
           "RESULT_DIR": str(result_dir), "MODEL_DIR": str(result_dir.parent / "model"),
           "BASE_PORT": str(port), "ACCELERATOR": "none"}
    env.pop("SERVER_ID", None)
    if server_id:
        env["SERVER_ID"] = server_id
    return subprocess.Popen(["bash", os.path.join(ROOT, "run_8p.sh"), *SMOKE, *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, start_new_session=True)


def finish(process, timeout=420):
    out, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, out[-3000:]
    return out


def last_train(model_dir):
    lines = (model_dir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if json.loads(line).get("kind") == "train"][-1]


def run_hosts(tmp_path, servers, ids, args=()):
    tmp_path.mkdir()
    rank_table = table(tmp_path / "table.json", servers)
    port = free_base_port()
    hosts = [host(rank_table, tmp_path / f"host{i}", server_id, args, port)
             for i, server_id in enumerate(ids)]
    try:
        return [finish(h) for h in hosts]
    finally:
        for h in hosts:
            if h.poll() is None:
                os.killpg(h.pid, signal.SIGKILL)


@pytest.mark.slow
def test_two_hosts_match_one_host(tmp_path):
    one = run_hosts(tmp_path / "one", ["127.0.0.1", "127.0.0.1"], [None])
    assert "rank 0:" in one[0] and "rank 1:" in one[0]
    two = run_hosts(tmp_path / "two", ["127.0.0.1", "127.0.0.2"], ["127.0.0.1", "127.0.0.2"])
    assert "rank 0:" in two[0] and "rank 1:" not in two[0]  # each host starts only its rank
    assert "rank 1:" in two[1] and "rank 0:" not in two[1]
    reference, result = last_train(tmp_path / "one" / "model"), last_train(tmp_path / "two" / "model")
    assert result["step"] == reference["step"] == 2
    assert result["loss"] == pytest.approx(reference["loss"], rel=1e-5)
    assert os.path.exists(tmp_path / "two" / "model" / "checkpoint")


def wait_for_checkpoint(model_dir, processes, timeout=300):
    deadline = time.time() + timeout
    while time.time() < deadline:
        for p in processes:
            assert p.poll() is None, p.stdout.read()[-3000:]
        if (model_dir / "checkpoint").exists():
            return
        time.sleep(0.5)
    raise AssertionError("no checkpoint written")


@pytest.mark.slow
def test_kill_one_host_then_restart_both_resumes(tmp_path):
    rank_table = table(tmp_path / "table.json", ["127.0.0.1", "127.0.0.2"])
    args = ["--train_steps=400", "--iterations_per_loop=2", "--save_checkpoints_steps=2"]
    model_dir = tmp_path / "model"
    port = free_base_port()
    hosts = [host(rank_table, tmp_path / f"host{i}", server, args, port)
             for i, server in enumerate(["127.0.0.1", "127.0.0.2"])]
    try:
        wait_for_checkpoint(model_dir, hosts)
        os.killpg(hosts[1].pid, signal.SIGKILL)  # host 1 dies with all its processes
    finally:
        for h in hosts:  # host 0 cannot go on without its peer: the operator stops it too
            if h.poll() is None:
                os.killpg(h.pid, signal.SIGKILL)
            h.communicate()
    killed_at = last_train(model_dir)["step"]
    assert killed_at < 400
    port = free_base_port()
    args = ["--train_steps=" + str(killed_at + 4), "--iterations_per_loop=2",
            "--save_checkpoints_steps=2"]
    restarted = [host(rank_table, tmp_path / f"host{i}", server, args, port)
                 for i, server in enumerate(["127.0.0.1", "127.0.0.2"])]
    try:
        for h in restarted:
            finish(h)
    finally:
        for h in restarted:
            if h.poll() is None:
                os.killpg(h.pid, signal.SIGKILL)
    log = (tmp_path / "host0" / "0" / "train.log").read_text()
    assert "Resuming from" in log
    resumed_from = int(log.split("Resuming from")[1].split("at step")[1].split()[0])
    assert killed_at - 2 <= resumed_from <= killed_at + 2
    assert last_train(model_dir)["step"] == killed_at + 4


def test_run_8p_starts_nothing_for_other_hosts_and_rejects_unknown_server_id(tmp_path):
    rank_table = table(tmp_path / "table.json", ["127.0.0.1", "10.255.255.1"])
    env = {**os.environ, "PYTHON": sys.executable, "RANK_TABLE": rank_table, "RANK_SIZE": "1",
           "RESULT_DIR": str(tmp_path / "out")}
    run = [os.path.join(ROOT, "run_8p.sh")]
    none = subprocess.run(["bash", *run], env={**env, "SERVER_ID": "10.255.255.1"},
                          capture_output=True, text=True, timeout=60)
    assert none.returncode == 0 and "none of the first 1 ranks is on this host" in none.stdout
    bad = subprocess.run(["bash", *run], env={**env, "SERVER_ID": "10.0.0.9"},
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2
    assert bad.stderr.strip() == (f"error: {rank_table}: SERVER_ID '10.0.0.9' is not a server_id "
                                  "of the table (127.0.0.1, 10.255.255.1)")
    assert not (tmp_path / "out").exists()
