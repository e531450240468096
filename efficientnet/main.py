"""`python -m efficientnet.main`: train / evaluate an EfficientNet (tensorflow/tpu flag names).

    python -m efficientnet.main --model_dir=/tmp/b0 --data_dir=/data/imagenet \
        --mode=train_and_eval --train_batch_size=256 --precision=mixed_float16

Flags are parsed into a `RunConfig` (efficientnet.train.config) and handed to
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


def main(argv: list[str] | None = None) -> int:
    """Runs the CLI; returns the process exit status (errors print one line, no traceback)."""
    from efficientnet.train.config import ConfigError
    from efficientnet.train.flags import config_from_flags, help_text

    argv = list(sys.argv[1:] if argv is None else argv)
    if any(arg in ("-h", "--help", "--helpfull", "-help") for arg in argv):
        print(help_text())
        return 0
    try:
        config = config_from_flags(argv)
        from efficientnet.train import trainer

        trainer.run(config)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_CONFIG
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # the engine's own, already clear, failures
        from efficientnet.train.trainer import NonFiniteLossError, Preempted

        if isinstance(error, NonFiniteLossError):
            print(f"error: {error}", file=sys.stderr)
            return EXIT_NONFINITE
        if isinstance(error, Preempted):
            print(str(error), file=sys.stderr)
            return EXIT_SIGTERM
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
