"""`python -m rank_tables to-tf-config FILE --rank N [--base_port P] [--rank_size S]`."""

from __future__ import annotations

import argparse
import json
import sys

import rank_tables


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rank_tables",
                                     description="Seed 002 rank tables -> TF_CONFIG")
    commands = parser.add_subparsers(dest="command", required=True)
    convert = commands.add_parser("to-tf-config", help="print the TF_CONFIG JSON of one rank")
    convert.add_argument("file", help="rank table JSON (e.g. rank_tables/8p.json)")
    convert.add_argument("--rank", type=int, required=True, help="0-based rank (RANK_ID)")
    convert.add_argument("--base_port", type=int, default=rank_tables.DEFAULT_BASE_PORT,
                         help="worker port = base_port + device_id (default %(default)s)")
    convert.add_argument("--rank_size", type=int, default=None,
                         help="use only the first RANK_SIZE devices")
    count = commands.add_parser("size", help="print the number of devices in the table")
    count.add_argument("file")
    args = parser.parse_args(argv)
    try:
        table = rank_tables.load(args.file)
        if args.command == "size":
            print(len(rank_tables.devices(table)))
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
