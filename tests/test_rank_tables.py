"""Ascend-style rank tables -> TF_CONFIG."""

import json
import os
import subprocess
import sys

import pytest

import rank_tables

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def table_path(name):
    return os.path.join(ROOT, "rank_tables", name)


def test_shipped_tables_parse():
    assert len(rank_tables.devices(rank_tables.load(table_path("8p.json")))) == 8
    assert len(rank_tables.devices(rank_tables.load(table_path("1p.json")))) == 1


def test_to_tf_config_ports_follow_device_ids_and_rank_size():
    table = rank_tables.load(table_path("8p.json"))
    config = rank_tables.to_tf_config(table, 3, base_port=30000)
    assert config["task"] == {"type": "worker", "index": 3}
    assert config["cluster"]["worker"][0] == "127.0.0.1:30000"
    assert config["cluster"]["worker"][7] == "127.0.0.1:30007"
    assert len(rank_tables.to_tf_config(table, 1, rank_size=2)["cluster"]["worker"]) == 2
    with pytest.raises(rank_tables.RankTableError, match="out of range"):
        rank_tables.to_tf_config(table, 2, rank_size=2)


@pytest.mark.parametrize("content, fragment", [
    ("not json", "not valid JSON"),
    ("{}", "group_list"),
    ('{"group_list": [{"instance_list": []}]}', "instance_list"),
    ('{"group_list": [{"instance_list": [{"server_id": "h", "devices": []}]}]}', "devices"),
    ('{"group_list": [{"device_count": "2", "instance_list": [{"server_id": "h", '
     '"devices": [{"device_id": "0"}]}]}]}', "device_count 2"),
    ('{"group_list": [{"instance_list": [{"server_id": "h", '
     '"devices": [{"device_id": "0"}, {"device_id": "0"}]}]}]}', "twice"),
])
def test_bad_tables_give_clear_errors(tmp_path, content, fragment):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(rank_tables.RankTableError, match=fragment):
        rank_tables.load(str(path))


def test_cli_prints_tf_config_and_fails_cleanly(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "rank_tables", "to-tf-config", table_path("8p.json"), "--rank",
         "1", "--base_port", "4000"], capture_output=True, text=True, cwd=ROOT, check=True)
    assert json.loads(out.stdout)["cluster"]["worker"][1] == "127.0.0.1:4001"
    bad = subprocess.run(
        [sys.executable, "-m", "rank_tables", "to-tf-config", str(tmp_path / "none.json"),
         "--rank", "0"], capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 2 and "does not exist" in bad.stderr
    assert "Traceback" not in bad.stderr


def two_server_table(tmp_path, first="127.0.0.1", second="10.255.255.1"):
    path = tmp_path / "16p.json"
    path.write_text(json.dumps({"group_list": [{"instance_list": [
        {"server_id": first, "devices": [{"device_id": str(d)} for d in range(8)]},
        {"server_id": second, "devices": [{"device_id": str(d)} for d in range(8)]}]}]}))
    return rank_tables.load(str(path))


def test_local_ranks_follow_server_id(tmp_path):
    table = two_server_table(tmp_path)
    assert rank_tables.local_ranks(table, server_id="10.255.255.1") == list(range(8, 16))
    assert rank_tables.local_ranks(table, server_id="127.0.0.1", rank_size=4) == [0, 1, 2, 3]
    assert rank_tables.local_ranks(table, server_id="10.255.255.1", rank_size=4) == []
    # Detected: 127.0.0.1 is this host, 10.255.255.1 (not an address of this machine) is not.
    assert rank_tables.local_ranks(table) == list(range(8))
    with pytest.raises(rank_tables.RankTableError, match="SERVER_ID 'elsewhere' is not"):
        rank_tables.local_ranks(table, server_id="elsewhere")
    foreign = two_server_table(tmp_path, "10.255.255.1", "10.255.255.2")
    with pytest.raises(rank_tables.RankTableError, match="set SERVER_ID"):
        rank_tables.local_ranks(foreign)


def test_is_this_host():
    import socket

    assert rank_tables.is_this_host("127.0.0.1") and rank_tables.is_this_host("localhost")
    assert rank_tables.is_this_host(socket.gethostname())
    assert not rank_tables.is_this_host("10.255.255.1")
    assert not rank_tables.is_this_host("no-such-host.invalid")


def test_rank_env_pins_one_accelerator_per_rank(tmp_path):
    table = two_server_table(tmp_path)
    env = rank_tables.rank_env(table, 11, base_port=30000)
    assert env["CUDA_VISIBLE_DEVICES"] == env["DEVICE_ID"] == "3"  # rank 11 = device 3 of host 2
    assert (env["RANK_ID"], env["RANK_SIZE"]) == ("11", "16")
    config = json.loads(env["TF_CONFIG"])
    assert config["task"] == {"type": "worker", "index": 11}
    assert config["cluster"]["worker"][11] == "10.255.255.1:30003"
    assert config["cluster"]["worker"][3] == "127.0.0.1:30003"
    assert rank_tables.rank_env(table, 2, accelerator="rocm")["HIP_VISIBLE_DEVICES"] == "2"
    assert rank_tables.rank_env(table, 2, accelerator="ascend")["ASCEND_RT_VISIBLE_DEVICES"] == "2"
    assert not any("VISIBLE" in key for key in rank_tables.rank_env(table, 2, accelerator="none"))
    with pytest.raises(rank_tables.RankTableError, match="unknown accelerator 'tpu'"):
        rank_tables.rank_env(table, 2, accelerator="tpu")


def test_tf_config_from_index():
    config = rank_tables.tf_config_from_index(1, 3, "job-{index}.svc", 2222)
    assert config == {"cluster": {"worker": ["job-0.svc:2222", "job-1.svc:2222", "job-2.svc:2222"]},
                      "task": {"type": "worker", "index": 1}}
    local = rank_tables.tf_config_from_index(0, 2, "127.0.0.1", 5000, port_step=1)
    assert local["cluster"]["worker"] == ["127.0.0.1:5000", "127.0.0.1:5001"]
    with pytest.raises(rank_tables.RankTableError, match="out of range"):
        rank_tables.tf_config_from_index(2, 2, "job-{index}.svc", 2222)
    with pytest.raises(rank_tables.RankTableError, match="needs '{index}'"):
        rank_tables.tf_config_from_index(0, 2, "job.svc", 2222)


def test_cli_exec_and_local_ranks(tmp_path):
    def cli(*args, env=None):
        return subprocess.run([sys.executable, "-m", "rank_tables", *args], capture_output=True,
                              text=True, cwd=ROOT, env={**os.environ, **(env or {})})

    table_file = tmp_path / "16p.json"
    two_server_table(tmp_path)
    out = cli("local-ranks", str(table_file), env={"SERVER_ID": "10.255.255.1"})
    assert out.stdout.split() == [str(r) for r in range(8, 16)]
    shown = cli("exec", str(table_file), "--rank", "9", "--", sys.executable, "-c",
                "import os; print(os.environ['CUDA_VISIBLE_DEVICES'], os.environ['RANK_ID'])")
    assert shown.returncode == 0 and shown.stdout.split() == ["1", "9"]
    missing = cli("exec", str(table_file), "--rank", "0", "--", "no-such-program-xyz")
    assert missing.returncode == 127 and "cannot run 'no-such-program-xyz'" in missing.stderr
    index = cli("tf-config-from-index", "--workers=2", "--host_pattern=j-{index}.s", "--",
                sys.executable, "-c", "import os; print(os.environ['TF_CONFIG'])",
                env={"JOB_COMPLETION_INDEX": "1"})
    assert json.loads(index.stdout)["task"] == {"type": "worker", "index": 1}
    unset = cli("tf-config-from-index", "--workers=2", "--host_pattern=j-{index}.s",
                env={"JOB_COMPLETION_INDEX": ""})
    assert unset.returncode == 2 and "JOB_COMPLETION_INDEX" in unset.stderr
    assert "Traceback" not in unset.stderr
