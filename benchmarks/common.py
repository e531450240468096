"""Shared plumbing of the benchmarks: result files, machine info, subprocesses, the statistic."""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

RESULTS_DIR = Path(__file__).parent / "results"
ROOT = Path(__file__).resolve().parents[1]
# The vector extensions that decide which kernels TensorFlow, oneDNN and XNNPACK pick.
SIMD_FLAGS = ("avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_tile", "neon",
              "asimd")


def machine_info() -> dict:
    """What a figure was measured on: CPU, cores, SIMD extensions, commit, library versions."""
    cpuinfo = _cpuinfo()
    info = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "cpu": next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines()
                     if line.startswith("model name")), platform.processor() or "unknown"),
        "cpu_simd": cpu_simd(cpuinfo),
        "commit": code_commit(),
    }
    if "tensorflow" in sys.modules:  # whether TensorFlow runs its oneDNN kernels here
        from tensorflow.python.util import _pywrap_util_port  # no public API says it

        info["tensorflow_onednn"] = bool(_pywrap_util_port.IsMklEnabled())
    # Versions from package metadata: importing torch next to TensorFlow crashes the process.
    for package in ("tensorflow-cpu", "tensorflow", "keras", "numpy", "jax", "torch", "timm",
                    "onnxruntime", "tf2onnx"):
        try:
            info[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:  # optional peers
            continue
    return info


def code_commit() -> str | None:
    """The checkout's short commit, "+dirty" with uncommitted changes outside the benchmarks'
    own outputs; None outside git."""
    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root,
                              capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return None
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
             ":(exclude)benchmarks/results", ":(exclude)README.md",
             ":(exclude)benchmarks/README.md"],
            cwd=root, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return head.stdout.strip() + ("+dirty" if status.stdout.strip() else "")


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def cpu_simd(cpuinfo: str | None = None) -> list[str]:
    """The SIMD_FLAGS that /proc/cpuinfo (or `cpuinfo`) reports, in SIMD_FLAGS order."""
    flags: set[str] = set()
    for line in (_cpuinfo() if cpuinfo is None else cpuinfo).splitlines():
        if line.split(":", 1)[0].strip().lower() in ("flags", "features") and ":" in line:
            flags.update(line.split(":", 1)[1].split())
    return [flag for flag in SIMD_FLAGS if flag in flags]


def cores() -> int:
    """The CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # no affinity API outside Linux
        return os.cpu_count() or 1


def json_line(args: list[str], what: str, timeout: float = 1800, **kwargs) -> dict:
    """Runs `args` (from the repository root) and returns the JSON of its last stdout line;
    RuntimeError naming `what` with the end of its stderr when it fails."""
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          **kwargs)
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def paired_ratio(readings: dict, name: str, reference: str) -> float:
    """Median over rounds of readings[name] / readings[reference] of the same round: both sides
    of a ratio share that moment's load, and the median ignores an odd round."""
    return statistics.median(a / b for a, b in zip(readings[name], readings[reference]))


def write_result(name: str, result: dict) -> Path:
    """Writes `results/<name>.json`, machine info merged into `result["machine"]` (which holds
    what only the benchmark knows, such as a GPU's name); returns the path."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    payload = {"benchmark": name, **result,
               "machine": {**machine_info(), **result.get("machine", {})}}
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path
