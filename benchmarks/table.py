"""The performance table of README.md and benchmarks/README.md, generated from results/*.json
(`python -m benchmarks table [--write | --check]`): one row per figure with what is measured,
ours, the best peer of the same run, the ratio and the host. A missing result file gives no row.
"""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks import common

ROOT = Path(__file__).resolve().parents[1]
READMES = (ROOT / "README.md", ROOT / "benchmarks" / "README.md")
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
HEADER = ("| what | ours | best peer | ratio | host |", "|---|---|---|---|---|")


def _rate(value: float, unit: str = "img/s") -> str:
    return f"{value:,.0f} {unit}" if value >= 100 else f"{value:.1f} {unit}"


def host(machine: dict) -> str:
    """"2-core AMD EPYC, AVX-512 VNNI" from a result's machine info, or its GPU."""
    if "device" in machine:
        return machine["device"]
    simd = machine.get("cpu_simd", [])
    vector = next((label for flag, label in (("avx512_vnni", "AVX-512 VNNI"),
                                             ("avx512f", "AVX-512"), ("avx2", "AVX2"),
                                             ("avx", "AVX only"), ("asimd", "NEON"))
                   if flag in simd), "")
    return ", ".join(part for part in (f"{machine.get('cpu_count')}-core "
                                       f"{machine.get('cpu', 'CPU')}", vector) if part)


def train_rows(result: dict) -> list[tuple]:
    ours = result["ours_images_per_sec"]
    peers = {"keras.applications, same engine": result["keras_applications_images_per_sec"],
             "timm, PyTorch": result.get("timm_images_per_sec")}
    name, peer = max(((k, v) for k, v in peers.items() if v), key=lambda item: item[1])
    settings = result["settings"]
    return [(f"training efficientnet-b0 on CPU, {settings['image_size']} px, batch "
             f"{settings['batch']}, {settings['precision']}", _rate(ours),
             f"{_rate(peer)} ({name})", f"{ours / peer:.2f}x")]


def gpu_rows(result: dict) -> list[tuple]:
    rows = []
    speed = [row for row in result["speed"] if row.get("images_per_sec")]
    for model in sorted({row["model"] for row in speed}):
        ours = [row for row in speed if row["model"] == model
                and row["framework"] == "keras-jax" and row["loss"] == row["loss"]]  # not NaN
        peers = [row for row in speed if row["model"] == model
                 and row["framework"].startswith("timm")]
        if not ours or not peers:
            continue
        best, peer = (max(group, key=lambda row: row["images_per_sec"])
                      for group in (ours, peers))
        rows.append((f"training {model} on GPU, {best['size']} px, batch {best['batch']}",
                     f"{_rate(best['images_per_sec'])} (Keras on JAX, {best['precision']})",
                     f"{_rate(peer['images_per_sec'])} ({peer['timm_model']}, bf16 autocast)",
                     f"{best['images_per_sec'] / peer['images_per_sec']:.2f}x"))
    return rows


def latency_rows(result: dict) -> list[tuple]:
    ours, peer = (result["figures"][result[key]] for key in ("best_ours", "best_peer"))
    return [(f"exported efficientnet-b0, batch-1 latency (p50, lower is better), "
             f"{result['settings']['threads']} threads",
             f"{ours['batch1_p50_ms']:.2f} ms ({result['best_ours'].removeprefix('ours ')})",
             f"{peer['batch1_p50_ms']:.2f} ms ({result['best_peer']})",
             f"{ours['batch1_p50_ms'] / peer['batch1_p50_ms']:.2f}x")]


def input_rows(result: dict) -> list[tuple]:
    rates = result["pipeline_images_per_sec_per_core"]
    cost = result["augmentation_cost_paired_median"]
    return [(f"training input at {result['image_size']} px, cost of {label} over plain "
             f"(ImageNet-like JPEGs)", f"{cost[key]:+.1%} ({_rate(rates[key], 'img/s/core')})",
             f"plain: {_rate(rates['plain'], 'img/s/core')}", "")
            for key, label in (("autoaugment", "AutoAugment"), ("randaugment", "RandAugment"))]


def conversion_rows(result: dict) -> list[tuple]:
    rates = result["conversion_images_per_sec_per_core"]
    baseline = next(v for k, v in rates.items() if k.startswith("baseline"))
    return [(f"converting {result['conversion_images']:,} JPEGs to TFRecords",
             _rate(rates["tfrecord_tools"], "img/s/core"),
             f"{_rate(baseline, 'img/s/core')} (TF-models-style threads)",
             f"{result['conversion_speedup_paired_median']:.1f}x")]


def scaling_rows(result: dict) -> list[tuple]:
    rates, settings = result["images_per_sec"], result["settings"]
    one = rates["1 device"]
    return [(f"{name} on the cores of 1 device ({settings['model']} {settings['image_size']} "
             f"px, global batch {settings['global_batch']})", _rate(value),
             f"{_rate(one)} (1 device)", f"{value / one:.2f}x")
            for name, value in rates.items() if name != "1 device"]


def accuracy_rows(result: dict) -> list[tuple]:
    rows = []
    if "scratch_10_classes" in result:
        part = result["scratch_10_classes"]
        settings = part.get("settings", result)
        rows.append((f"Fashion-MNIST top-1, efficientnet-b0 {settings['image_size']} px from "
                     f"scratch, {settings['epochs']:g} epochs",
                     f"{part['final']['top_1_accuracy']:.2%}", "", ""))
    part = result.get("imagenet_finetune", {})
    if "imagenet" in part:
        tuned, scratch = (part[key]["final"]["top_1_accuracy"] for key in ("imagenet", "scratch"))
        rows.append((f"Fashion-MNIST top-1, ImageNet efficientnet-lite0 (PyTorch weights) "
                     f"fine-tuned {part['settings']['image_size']} px, "
                     f"{part['settings']['epochs']:g} epoch(s), "
                     f"{part['imagenet']['wall_seconds'] / 60:.0f} min", f"{tuned:.2%}",
                     f"{scratch:.2%} (from scratch, same steps)",
                     f"{100 * (tuned - scratch):+.2f} points"))
    if "int8" in part:
        fp32, int8 = (part["int8"][fmt]["top1"] for fmt in ("tflite", "tflite_int8"))
        rows.append(("Fashion-MNIST top-1 of the fine-tuned Lite0, TFLite int8 (10,000 images)",
                     f"{int8:.2%}", f"{fp32:.2%} (TFLite fp32)",
                     f"{100 * (int8 - fp32):+.2f} points"))
    photos = result.get("imagenet_photos_int8", {})
    if "batch1_p50_ms" in photos:
        latency, top1 = photos["batch1_p50_ms"], {f: photos[f]["top1"] for f in ("tflite",
                                                                                  "tflite_int8")}
        rows.append((f"ImageNet efficientnet-lite0 as TFLite int8, 224 px, batch-1 latency "
                     f"(p50), labelled photos right: int8 {top1['tflite_int8']:.0%}, fp32 "
                     f"{top1['tflite']:.0%}", f"{latency['tflite_int8']:.2f} ms",
                     f"{latency['tflite']:.2f} ms (TFLite fp32)",
                     f"{latency['tflite_int8'] / latency['tflite']:.2f}x"))
    return rows


# Result file name -> its rows, in the table's order.
FIGURES = {"train": train_rows, "gpu": gpu_rows, "latency": latency_rows, "input": input_rows,
           "conversion": conversion_rows, "scaling": scaling_rows, "accuracy": accuracy_rows}


def markdown_rows(name: str, result: dict) -> list[str]:
    """The table lines of result file `name` holding `result`."""
    return ["| " + " | ".join(cell or "-" for cell in (*row, host(result["machine"]))) + " |"
            for row in FIGURES[name](result)]


def render(results_dir: Path | None = None) -> str:
    """The table, markers included, from the result files in `results_dir`."""
    results_dir = results_dir or common.RESULTS_DIR
    lines = [BEGIN, *HEADER]
    for name in FIGURES:
        path = results_dir / f"{name}.json"
        if path.exists():
            lines += markdown_rows(name, json.loads(path.read_text()))
    return "\n".join([*lines, END])


def replace_table(text: str, table: str) -> str:
    """`text` with the part between BEGIN and END (markers included) replaced by `table`."""
    if BEGIN not in text or END not in text:
        raise ValueError(f"no {BEGIN} ... {END} markers")
    before, rest = text.split(BEGIN, 1)
    return before + table + rest.split(END, 1)[1]


def main(write: bool = False, check: bool = False, readmes=None,
         results_dir: Path | None = None) -> int:
    """Prints the table, or rewrites (`write`) / compares (`check`) it in `readmes` (default
    READMES); returns the exit status."""
    table = render(results_dir)
    if not (write or check):
        print(table)
        return 0
    stale = []
    for readme in readmes or READMES:
        text = readme.read_text()
        try:
            updated = replace_table(text, table)
        except ValueError as error:
            print(f"{readme}: {error}")
            return 1
        if updated != text:
            stale.append(readme)
            if write:
                readme.write_text(updated)
    what = "rewritten" if write else ("table differs from results/*.json; run "
                                      "python -m benchmarks table --write")
    for readme in stale:
        print(f"{readme}: {what}")
    return 1 if check and stale else 0
