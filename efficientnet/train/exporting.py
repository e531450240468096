"""--export_dir after training (the tensorflow/tpu main.py habit): a SavedModel through
`efficientnet.export`, with the run's model and eval preprocessing; other formats come from
`bash test.sh export`."""

from __future__ import annotations

from efficientnet.config import run_file
from efficientnet.config.schema import Experiment


def export_args(config: Experiment) -> list[str]:
    """`python -m efficientnet.export` flags that write this run's SavedModel to --export_dir."""
    return run_file.export_flags(config, formats="saved_model")


def export_saved_model(config: Experiment, reporter) -> int:
    """Exports the trained run; returns the exporter's exit status (also reported)."""
    from efficientnet.export.__main__ import main as export_main

    status = export_main(export_args(config))
    reporter.print(f"SavedModel export to {config.train.export_dir}: "
                   + ("done" if status == 0 else f"failed (status {status})"))
    return status
