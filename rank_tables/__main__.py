"""`python -m rank_tables COMMAND`: rank tables -> TF_CONFIG, and the launch steps of run_8p.sh.

    python -m rank_tables to-tf-config FILE --rank N [--base_port P] [--rank_size S]
    python -m rank_tables size FILE
    python -m rank_tables local-ranks FILE [--server_id S] [--rank_size S]   # this host's ranks
    python -m rank_tables exec FILE --rank N [...] -- COMMAND ...   # COMMAND in rank N's env
    python -m rank_tables tf-config-from-index --workers N --host_pattern 'job-{index}.svc' \\
        --port 2222 [--index I] [-- COMMAND ...]                     # Kubernetes indexed Job
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import rank_tables


def _split_command(argv: list[str]) -> tuple[list[str], list[str]]:
    """(our arguments, the COMMAND after `--`)."""
    if "--" in argv:
        cut = argv.index("--")
        return argv[:cut], argv[cut + 1:]
    return argv, []


def _exec(command: list[str], env: dict[str, str]) -> int:
    """Replaces this process with `command` (so the launcher's pid is the worker's)."""
    try:
        os.execvpe(command[0], command, {**os.environ, **env})
    except OSError as error:
        print(f"error: cannot run {command[0]!r}: {error.strerror}", file=sys.stderr)
        return 127
    return 0  # not reached


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m rank_tables",
                                     description="Ascend rank tables -> TF_CONFIG; this host's ranks")
    commands = parser.add_subparsers(dest="command", required=True)

    def rank_options(sub, rank=True):
        sub.add_argument("file", help="rank table JSON (e.g. rank_tables/8p.json)")
        if rank:
            sub.add_argument("--rank", type=int, required=True, help="0-based rank (RANK_ID)")
            sub.add_argument("--base_port", type=int, default=rank_tables.DEFAULT_BASE_PORT,
                             help="worker port = base_port + device_id (default %(default)s)")
        sub.add_argument("--rank_size", type=int, default=None,
                         help="use only the first RANK_SIZE devices")

    rank_options(commands.add_parser("to-tf-config", help="print the TF_CONFIG JSON of one rank"))
    count = commands.add_parser("size", help="print the number of devices in the table")
    count.add_argument("file")
    local = commands.add_parser("local-ranks", help="print the ranks to start on this host")
    rank_options(local, rank=False)
    local.add_argument("--server_id", default=os.environ.get("SERVER_ID") or None,
                       help="this host's server_id in the table (default $SERVER_ID, else "
                            "detected from this host's names and addresses)")
    run = commands.add_parser("exec", help="run COMMAND (after --) with rank N's environment")
    rank_options(run)
    run.add_argument("--accelerator", choices=sorted(rank_tables.VISIBLE_DEVICES),
                     default="cuda", help="which *_VISIBLE_DEVICES to set (default %(default)s)")
    index = commands.add_parser(
        "tf-config-from-index", help="TF_CONFIG of an indexed Job's pod; runs COMMAND (after --) "
                                     "with it, or prints it")
    index.add_argument("--workers", type=int, required=True, help="number of pods")
    index.add_argument("--host_pattern", required=True,
                       help="pod address with {index}, e.g. efficientnet-{index}.efficientnet")
    index.add_argument("--port", type=int, default=2222)
    index.add_argument("--port_step", type=int, default=0,
                       help="port of pod i = port + i * port_step (tests on one machine)")
    index.add_argument("--index", type=int, default=None,
                       help="this pod's index (default $JOB_COMPLETION_INDEX)")
    return parser


def main(argv: list[str] | None = None) -> int:
    ours, command = _split_command(list(sys.argv[1:] if argv is None else argv))
    args = _parser().parse_args(ours)
    try:
        if args.command == "tf-config-from-index":
            index = args.index
            if index is None:
                if not os.environ.get("JOB_COMPLETION_INDEX", "").isdigit():
                    raise rank_tables.RankTableError(
                        "--index not given and JOB_COMPLETION_INDEX is not set to a pod index "
                        "(run inside an indexed Job, or pass --index)")
                index = int(os.environ["JOB_COMPLETION_INDEX"])
            config = rank_tables.tf_config_from_index(index, args.workers, args.host_pattern,
                                                      args.port, args.port_step)
            if command:
                return _exec(command, {"TF_CONFIG": json.dumps(config)})
            print(json.dumps(config))
            return 0
        table = rank_tables.load(args.file)
        if args.command == "size":
            print(len(rank_tables.devices(table)))
        elif args.command == "local-ranks":
            print(" ".join(str(rank) for rank in rank_tables.local_ranks(
                table, server_id=args.server_id, rank_size=args.rank_size)))
        elif args.command == "exec":
            if not command:
                raise rank_tables.RankTableError("exec needs a command after '--'")
            return _exec(command, rank_tables.rank_env(
                table, args.rank, rank_size=args.rank_size, base_port=args.base_port,
                accelerator=args.accelerator))
        else:
            config = rank_tables.to_tf_config(table, args.rank, rank_size=args.rank_size,
                                              base_port=args.base_port)
            print(json.dumps(config))
    except rank_tables.RankTableError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # e.g. stdout closed, or the table unreadable
        print(f"error: {error.filename or args.file}: {error.strerror or error}", file=sys.stderr)
        return 2 if error.filename else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
