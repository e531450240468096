"""Experiment configuration: the typed tree, the registry of named experiments, config.json.

    from efficientnet.config import get_experiment
    experiment = get_experiment("b0-imagenet-rmsprop", model_dir="/tmp/b0", use_synthetic_data=True)

`schema` defines the tree and its checks, `experiments` the named recipes, `run_file` the
`<model_dir>/config.json` of a run. Imports nothing else of the project, so the data pipeline,
the trainer and the exporter can all depend on it.
"""

from efficientnet.config.experiments import (
    ALIASES,
    DEFAULT,
    RECIPES,
    experiment_names,
    get_experiment,
)
from efficientnet.config.schema import (
    ConfigError,
    DataConfig,
    DatasetConfig,
    Experiment,
    ModelConfig,
    OptimizerConfig,
    ScheduleConfig,
    TrainConfig,
    TransferConfig,
)

__all__ = [
    "ALIASES",
    "DEFAULT",
    "RECIPES",
    "ConfigError",
    "DataConfig",
    "DatasetConfig",
    "Experiment",
    "ModelConfig",
    "OptimizerConfig",
    "ScheduleConfig",
    "TrainConfig",
    "TransferConfig",
    "experiment_names",
    "get_experiment",
]
