"""Seed 002 (Ascend) rank tables -> TF_CONFIG for MultiWorkerMirroredStrategy.

A rank table lists `group_list[].instance_list[]`, each instance (one host, `server_id`) with its
`devices[{device_id, device_ip}]`. Rank r is the r-th device in file order; in TF2 it becomes
worker r of TF_CONFIG at `<server_id>:<base_port + device_id>` (one process per device).
"""

from __future__ import annotations

import json
import os

DEFAULT_BASE_PORT = 23456
__all__ = ["DEFAULT_BASE_PORT", "RankTableError", "devices", "load", "to_tf_config"]


class RankTableError(ValueError):
    """A rank table that cannot be used, with a message naming the file and the problem."""


def load(path: str) -> dict:
    """Reads and checks a rank table file; returns the parsed JSON (with `_path` added)."""
    if not os.path.isfile(path):
        raise RankTableError(f"Rank table {path!r} does not exist")
    try:
        with open(path, encoding="utf-8") as handle:
            table = json.load(handle)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise RankTableError(f"Rank table {path!r} is not valid JSON: {error}") from None
    if not isinstance(table, dict):
        raise RankTableError(f"Rank table {path!r} must be a JSON object with 'group_list'")
    table = dict(table, _path=path)
    devices(table)  # validates
    return table


def devices(table: dict) -> list[dict]:
    """Every device of the table in rank order: {rank, server_id, device_id, device_ip, pod_name}."""
    where = table.get("_path", "rank table")
    groups = table.get("group_list")
    if not isinstance(groups, list) or not groups:
        raise RankTableError(f"{where}: 'group_list' must be a non-empty list")
    found: list[dict] = []
    seen = set()
    for g, group in enumerate(groups):
        instances = group.get("instance_list") if isinstance(group, dict) else None
        if not isinstance(instances, list) or not instances:
            raise RankTableError(f"{where}: group_list[{g}] needs a non-empty 'instance_list'")
        group_devices = 0
        for i, instance in enumerate(instances):
            label = f"group_list[{g}].instance_list[{i}]"
            if not isinstance(instance, dict) or not instance.get("server_id"):
                raise RankTableError(f"{where}: {label} needs a 'server_id' (the host address)")
            listed = instance.get("devices")
            if not isinstance(listed, list) or not listed:
                raise RankTableError(f"{where}: {label} needs a non-empty 'devices' list")
            for d, device in enumerate(listed):
                try:
                    device_id = int(device["device_id"])
                except (KeyError, TypeError, ValueError):
                    raise RankTableError(
                        f"{where}: {label}.devices[{d}] needs an integer 'device_id'") from None
                key = (instance["server_id"], device_id)
                if key in seen:
                    raise RankTableError(
                        f"{where}: device_id {device_id} appears twice on server "
                        f"{instance['server_id']}")
                seen.add(key)
                found.append({
                    "rank": len(found), "server_id": str(instance["server_id"]),
                    "device_id": device_id, "device_ip": device.get("device_ip"),
                    "pod_name": instance.get("pod_name"),
                })
                group_devices += 1
        if "device_count" in group:
            try:
                declared = int(group["device_count"])
            except (TypeError, ValueError):
                raise RankTableError(
                    f"{where}: group_list[{g}].device_count must be an integer") from None
            if declared != group_devices:
                raise RankTableError(
                    f"{where}: group_list[{g}] says device_count {declared} but lists "
                    f"{group_devices} devices")
    return found


def to_tf_config(table: dict, rank: int, rank_size: int | None = None,
                 base_port: int = DEFAULT_BASE_PORT) -> dict:
    """TF_CONFIG dict for worker `rank`; `rank_size` keeps only the first ranks of the table."""
    listed = devices(table)
    where = table.get("_path", "rank table")
    size = len(listed) if rank_size is None else int(rank_size)
    if not 1 <= size <= len(listed):
        raise RankTableError(f"{where}: RANK_SIZE {size} must be between 1 and {len(listed)}")
    if not 0 <= rank < size:
        raise RankTableError(f"{where}: rank {rank} is out of range for {size} device(s)")
    if not (0 < base_port and base_port + max(d["device_id"] for d in listed) < 65536):
        raise RankTableError(f"base port {base_port} gives ports outside 1..65535")
    workers = [f"{d['server_id']}:{base_port + d['device_id']}" for d in listed[:size]]
    return {"cluster": {"worker": workers}, "task": {"type": "worker", "index": rank}}
