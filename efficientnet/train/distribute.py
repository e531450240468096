"""Strategy selection: default, MirroredStrategy, or MultiWorkerMirroredStrategy.

- `TF_CONFIG` in the environment, or `--rank_table` with `RANK_ID`: MultiWorkerMirroredStrategy
  (one process per device; the rank table becomes a TF_CONFIG, see `rank_tables`).
- `--num_cpu_devices N` (N > 1): MirroredStrategy over N logical CPU devices (tests, demos).
- Several GPUs: MirroredStrategy. Otherwise the default strategy.

Must run before TensorFlow initialises its devices (first op), which `efficientnet.main` ensures.
"""

from __future__ import annotations

import json
import os

import tensorflow as tf

from efficientnet.config.schema import ConfigError, Experiment


def tf_config_from_rank_table(rank_table: str, rank: int | None = None,
                              base_port: int | None = None) -> dict:
    """TF_CONFIG for `rank` (default: $RANK_ID) of a rank table file (rank_tables)."""
    import rank_tables

    if rank is None:
        if "RANK_ID" not in os.environ:
            raise ConfigError("--rank_table needs the RANK_ID environment variable (0-based rank)")
        try:
            rank = int(os.environ["RANK_ID"])
        except ValueError:
            raise ConfigError(f"RANK_ID must be an integer, got {os.environ['RANK_ID']!r}") from None
    try:
        table = rank_tables.load(rank_table)
        rank_size = int(os.environ["RANK_SIZE"]) if os.environ.get("RANK_SIZE") else None
        kwargs = {} if base_port is None else {"base_port": base_port}
        return rank_tables.to_tf_config(table, rank, rank_size=rank_size, **kwargs)
    except (rank_tables.RankTableError, ValueError) as error:
        raise ConfigError(str(error)) from None


def configure_devices(config: Experiment) -> None:
    """Splits the CPU into logical devices for --num_cpu_devices (before any TF op)."""
    if config.train.num_cpu_devices > 1:
        cpus = tf.config.list_physical_devices("CPU")
        try:
            tf.config.set_logical_device_configuration(
                cpus[0], [tf.config.LogicalDeviceConfiguration()] * config.train.num_cpu_devices)
        except RuntimeError:
            logical = tf.config.list_logical_devices("CPU")
            if len(logical) != config.train.num_cpu_devices:
                raise ConfigError(
                    f"--num_cpu_devices={config.train.num_cpu_devices} must be set before TensorFlow "
                    f"starts; this process already has {len(logical)} CPU device(s)") from None


def create_strategy(config: Experiment) -> tf.distribute.Strategy:
    """The strategy for `config` and the environment (see the module docstring)."""
    if config.train.rank_table and not os.environ.get("TF_CONFIG"):
        os.environ["TF_CONFIG"] = json.dumps(tf_config_from_rank_table(config.train.rank_table))
    if os.environ.get("TF_CONFIG"):
        try:
            cluster = json.loads(os.environ["TF_CONFIG"])
        except json.JSONDecodeError as error:
            raise ConfigError(f"TF_CONFIG is not valid JSON: {error}") from None
        tasks = cluster.get("cluster", {})
        # A Kubeflow TFJob may add a "chief" task beside the workers: it trains too.
        if len(tasks.get("chief", [])) + len(tasks.get("worker", [])) > 1:
            return tf.distribute.MultiWorkerMirroredStrategy()
    configure_devices(config)
    if config.train.num_cpu_devices > 1:
        devices = [d.name for d in tf.config.list_logical_devices("CPU")][: config.train.num_cpu_devices]
        return tf.distribute.MirroredStrategy(devices=devices)
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def task_info(strategy: tf.distribute.Strategy) -> tuple[bool, int, int]:
    """(is_chief, task id, number of workers) of this process."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True, 0, 1
    task_type, task_id = resolver.task_type, resolver.task_id or 0
    tasks = resolver.cluster_spec().as_dict()
    num_workers = len(tasks.get("chief", [])) + len(tasks.get("worker", [])) or 1
    is_chief = task_type == "chief" or (task_type == "worker" and task_id == 0
                                        and "chief" not in resolver.cluster_spec().as_dict())
    return is_chief, int(task_id), num_workers


def use_xla(config: Experiment) -> bool:
    if config.train.xla == "on":
        return True
    if config.train.xla == "off":
        return False
    return bool(tf.config.list_physical_devices("GPU"))
