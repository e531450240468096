"""`python -m efficientnet.main`: train / evaluate an EfficientNet (tensorflow/tpu flag names).

    python -m efficientnet.main --model_dir=/tmp/b0 --data_dir=/data/imagenet \
        --mode=train_and_eval --train_batch_size=256 --precision=mixed_float16

Flags are parsed into an `Experiment` (efficientnet.config) and handed to
`efficientnet.train.trainer.run`, which is also what tests call. `--help` lists every flag.
"""

from __future__ import annotations

import sys

from efficientnet import quiet_tensorflow_logs

# Quiet TensorFlow's C++ start-up chatter unless the user asked for it.
quiet_tensorflow_logs()

EXIT_CONFIG = 2
EXIT_NONFINITE = 3
EXIT_SIGTERM = 143


def _main(argv: list[str]) -> int:
    from efficientnet.config import ConfigError
    from efficientnet.train.flags import config_from_flags, help_text

    if any(arg in ("-h", "--help", "--helpfull", "-help") for arg in argv):
        print(help_text())
        return 0
    config = config_from_flags(argv)
    from efficientnet.cli import CommandError
    from efficientnet.train import trainer
    from efficientnet.train.checkpointing import CheckpointError
    from efficientnet.train.restore import RestoreError

    try:
        trainer.run(config)
    except trainer.Preempted as error:
        print(str(error), file=sys.stderr)
        return EXIT_SIGTERM
    except trainer.NonFiniteLossError as error:
        raise CommandError(str(error), EXIT_NONFINITE) from error
    except (ConfigError, RestoreError, CheckpointError) as error:
        raise CommandError(str(error), EXIT_CONFIG) from error
    except Exception as error:
        import tensorflow as tf

        if isinstance(error, tf.errors.DataLossError):
            from efficientnet.train.faults import data_loss_error

            data = config.data
            raise data_loss_error(None if data.use_synthetic_data else data.data_dir,
                                  error) from error
        raise
    return 0


def main(argv: list[str] | None = None) -> int:
    """Runs the CLI; returns the process exit status (anticipated errors print one line, exit 2
    for bad input and 1 at run time; --verbose adds the traceback)."""
    from efficientnet import cli
    from efficientnet.config import ConfigError

    return cli.run(_main, argv, known={ConfigError: EXIT_CONFIG})


if __name__ == "__main__":
    sys.exit(main())
