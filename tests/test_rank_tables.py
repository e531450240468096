"""Seed 002 rank tables -> TF_CONFIG."""

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
