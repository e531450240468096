"""`python -m benchmarks run [--quick] [--only NAME]`: speed next to peers, written to results/.

Each benchmark writes `benchmarks/results/<name>.json` (figures, ratios, machine, versions, date)
and a PNG plot, and the table in `benchmarks/README.md` is regenerated. Absolute times on a shared
2-core machine are noisy: the ratios against peers measured in the same run are what count.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Before any benchmark imports TensorFlow: the toolkit's oneDNN default (efficientnet/__init__.py),
# so the engine is measured as users run it.
import efficientnet  # noqa: E402,F401

# name -> module with `run(quick: bool) -> dict` (a dict with a "summary" list of lines).
BENCHMARKS = {
    "train": "benchmarks.train_speed",
    "input": "benchmarks.input_pipeline",
    "latency": "benchmarks.latency",
    "scaling": "benchmarks.scaling",
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run benchmarks and write results/")
    run.add_argument("--quick", action="store_true", help="short runs (under 10 minutes in all)")
    run.add_argument("--only", choices=sorted(BENCHMARKS), action="append",
                     help="run only this benchmark (repeatable)")
    args = parser.parse_args(argv)

    from benchmarks import common

    failures = 0
    for name in args.only or list(BENCHMARKS):
        try:
            module = importlib.import_module(BENCHMARKS[name])
        except ImportError as error:
            print(f"[{name}] not available: {error}", file=sys.stderr)
            failures += 1
            continue
        print(f"[{name}] running{' (quick)' if args.quick else ''} ...", flush=True)
        start = time.perf_counter()
        result = module.run(quick=args.quick)
        result["wall_seconds"] = round(time.perf_counter() - start, 1)
        result["quick"] = args.quick
        path = common.write_result(name, result)
        for line in result.get("summary", []):
            print(f"[{name}] {line}")
        print(f"[{name}] wrote {path} in {result['wall_seconds']} s", flush=True)
    common.update_readme()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
