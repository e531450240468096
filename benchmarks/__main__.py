"""`python -m benchmarks run [--quick] [--only NAME]`: speed next to peers, into results/.

Each benchmark writes `benchmarks/results/<name>.json` (figures, machine, library versions);
then the tables of README.md and benchmarks/README.md are regenerated (`python -m benchmarks
table --write` does only that).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Before a benchmark imports TensorFlow: the toolkit's oneDNN default, as users run the engine.
import efficientnet  # noqa: E402,F401

# name -> module with `run(quick: bool) -> dict`, the figures of results/<name>.json.
BENCHMARKS = {"train": "benchmarks.train_speed", "input": "benchmarks.input_pipeline",
              "conversion": "benchmarks.conversion", "latency": "benchmarks.latency",
              "scaling": "benchmarks.scaling"}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run benchmarks and write results/")
    run.add_argument("--quick", action="store_true", help="short runs (minutes, noisier)")
    run.add_argument("--only", choices=sorted(BENCHMARKS), action="append",
                     help="run only this benchmark (repeatable)")
    table = sub.add_parser("table", help="the performance table from results/*.json")
    table.add_argument("--write", action="store_true", help="rewrite it in both READMEs")
    table.add_argument("--check", action="store_true",
                       help="exit 1 when a README's table differs from the generated one")
    args = parser.parse_args(argv)

    from benchmarks import common
    from benchmarks import table as results_table

    if args.command == "table":
        return results_table.main(write=args.write, check=args.check)
    for name in args.only or list(BENCHMARKS):
        module = importlib.import_module(BENCHMARKS[name])
        print(f"[{name}] running{' (quick)' if args.quick else ''} ...", flush=True)
        start = time.perf_counter()
        result = module.run(quick=args.quick)
        result.update(wall_seconds=round(time.perf_counter() - start, 1), quick=args.quick)
        path = common.write_result(name, result)
        for line in results_table.markdown_rows(name, json.loads(path.read_text())):
            print(f"[{name}] {line}")
        print(f"[{name}] wrote {path} in {result['wall_seconds']} s", flush=True)
    return results_table.main(write=True)


if __name__ == "__main__":
    sys.exit(main())
