"""Ascend-style rank tables (HCCL JSON) -> TF_CONFIG for MultiWorkerMirroredStrategy.

A rank table lists `group_list[].instance_list[]`, each instance (one host, `server_id`) with its
`devices[{device_id, device_ip}]`. Rank r is the r-th device in file order; in TF2 it becomes
worker r of TF_CONFIG at `<server_id>:<base_port + device_id>` (one process per device).

Several hosts share one table: each host starts only its own ranks (`local_ranks`: the devices
whose `server_id` is this host, detected or named by `SERVER_ID`), each rank with the environment
of `rank_env` (TF_CONFIG, RANK_ID, RANK_SIZE, DEVICE_ID and the variable that shows the process
only its own accelerator). On Kubernetes an indexed Job has no table: `tf_config_from_index`
builds the same TF_CONFIG from the pod's index (docs/kubernetes.md).
"""

from __future__ import annotations

import json
import os
import socket

DEFAULT_BASE_PORT = 23456
# The variable that hides every accelerator but the rank's own (its `device_id`) from the
# process; the framework then sees that one device as device 0.
VISIBLE_DEVICES = {
    "cuda": "CUDA_VISIBLE_DEVICES",  # NVIDIA GPUs (TensorFlow, JAX, PyTorch)
    "rocm": "HIP_VISIBLE_DEVICES",  # AMD GPUs
    "ascend": "ASCEND_RT_VISIBLE_DEVICES",  # Ascend NPUs (CANN runtime)
    "none": None,  # CPU-only hosts: leave the device variables alone
}
__all__ = ["DEFAULT_BASE_PORT", "RankTableError", "VISIBLE_DEVICES", "devices", "is_this_host",
           "load", "local_ranks", "rank_env", "tf_config_from_index", "to_tf_config"]


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


def is_this_host(server_id: str) -> bool:
    """Whether `server_id` (an address or host name) names this machine: it is this host's name,
    or one of its addresses can be bound here (which holds for every local interface address,
    and on Linux for all of 127.0.0.0/8)."""
    if server_id in (socket.gethostname(), socket.getfqdn()):
        return True
    try:
        addresses = {(info[0], info[4][0]) for info in
                     socket.getaddrinfo(server_id, None, proto=socket.IPPROTO_TCP)}
    except (socket.gaierror, UnicodeError):
        return False
    for family, address in sorted(addresses):
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            try:
                probe.bind((address, 0))
                return True
            except OSError:
                continue
    return False


def local_ranks(table: dict, server_id: str | None = None,
                rank_size: int | None = None) -> list[int]:
    """Ranks (below `rank_size`) to start on this host: those of server `server_id` when given
    (the SERVER_ID variable of run_8p.sh), else of every server that `is_this_host`."""
    listed = devices(table)
    where = table.get("_path", "rank table")
    size = len(listed) if rank_size is None else int(rank_size)
    if not 1 <= size <= len(listed):
        raise RankTableError(f"{where}: RANK_SIZE {size} must be between 1 and {len(listed)}")
    servers = list(dict.fromkeys(d["server_id"] for d in listed))
    if server_id:
        if server_id not in servers:
            raise RankTableError(f"{where}: SERVER_ID {server_id!r} is not a server_id of the "
                                 f"table ({', '.join(servers)})")
        mine = {server_id}
    else:
        mine = {server for server in servers if is_this_host(server)}
        if not mine:
            raise RankTableError(
                f"{where}: no server_id of the table ({', '.join(servers)}) is this host "
                f"({socket.gethostname()}); set SERVER_ID to this host's server_id")
    return [d["rank"] for d in listed[:size] if d["server_id"] in mine]


def rank_env(table: dict, rank: int, rank_size: int | None = None,
             base_port: int = DEFAULT_BASE_PORT, accelerator: str = "cuda") -> dict[str, str]:
    """The environment variables of rank `rank`'s process: TF_CONFIG, RANK_ID, RANK_SIZE,
    DEVICE_ID (the table's device_id) and, unless `accelerator` is "none", the variable of
    VISIBLE_DEVICES set to that device_id, so the process sees only its own accelerator."""
    if accelerator not in VISIBLE_DEVICES:
        raise RankTableError(f"unknown accelerator {accelerator!r}; "
                             f"use one of {', '.join(VISIBLE_DEVICES)}")
    config = to_tf_config(table, rank, rank_size=rank_size, base_port=base_port)
    device_id = devices(table)[rank]["device_id"]
    env = {"TF_CONFIG": json.dumps(config), "RANK_ID": str(rank),
           "RANK_SIZE": str(len(config["cluster"]["worker"])), "DEVICE_ID": str(device_id)}
    if VISIBLE_DEVICES[accelerator]:
        env[VISIBLE_DEVICES[accelerator]] = str(device_id)
    return env


def tf_config_from_index(index: int, workers: int, host_pattern: str, port: int,
                         port_step: int = 0) -> dict:
    """TF_CONFIG of worker `index` of `workers` whose addresses are `host_pattern` with {index}
    filled in (an indexed Job's pods: `<job>-{index}.<headless service>`) at `port`
    (+ index * `port_step`, which lets tests put every worker on one machine)."""
    if workers < 1:
        raise RankTableError(f"--workers must be at least 1, got {workers}")
    if not 0 <= index < workers:
        raise RankTableError(f"pod index {index} is out of range for {workers} worker(s)")
    if "{index}" not in host_pattern and not port_step:
        raise RankTableError(f"host pattern {host_pattern!r} needs '{{index}}'")
    last_port = port + (workers - 1) * port_step
    if not (0 < port and last_port < 65536):
        raise RankTableError(f"port {port} gives ports outside 1..65535")
    cluster = [f"{host_pattern.replace('{index}', str(i))}:{port + i * port_step}"
               for i in range(workers)]
    return {"cluster": {"worker": cluster}, "task": {"type": "worker", "index": index}}
