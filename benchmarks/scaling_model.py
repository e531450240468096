"""Data-parallel scaling model, 1 -> 8 -> 64 accelerators: `python -m benchmarks.scaling_model`
prints the table of docs/scaling.md, which gives the formula (compute, then a ring all-reduce of
the gradients, capped by each host's input pipeline), its sources and its assumptions.
"""

from __future__ import annotations

import math
from typing import NamedTuple

# 4 bytes x trainable parameters (1000 classes), as benchmarks.scaling.gradient_bytes counts.
GRADIENT_BYTES = {"efficientnet-b0": 4 * 5_288_548, "efficientnet-b4": 4 * 19_341_616}
MARGIN = 0.10  # |projected / published - 1| of every published point not fitted
# The published points `fitted` uses: efficiency, DGX A100 input ceiling, Ascend 910 rate.
FITS = {("a100-tf32-b0", 8), ("a100-amp-b0", 16), ("ascend910-b0", 8)}


class System(NamedTuple):
    label: str
    model: str
    batch: int  # per device
    rate: float | None  # published single-device images/s (None: implied by the 8p figure)
    published: dict  # devices -> images/s
    intra_bw: float = 300e9  # bytes/s per direction in a host: A100 NVLink 3
    inter_bw: float = 25e9  # network bytes/s per device: one 200 Gb/s HDR NIC per A100
    per_host: int = 8


SYSTEMS = {  # NVIDIA DeepLearningExamples TensorFlow2/Classification/ConvNets/efficientnet_v1
    "a100-tf32-b0": System("DGX A100, B0, TF32", "efficientnet-b0", 512, 1209,
                           {1: 1209, 8: 9119, 16: 17815}),
    "a100-amp-b0": System("DGX A100, B0, AMP", "efficientnet-b0", 1024, 3454,
                          {1: 3454, 8: 20647, 16: 40644}),
    "a100-amp-b4": System("DGX A100, B4 380px, AMP", "efficientnet-b4", 160, 470,
                          {1: 470, 8: 3550, 32: 12908, 64: 25455}),
    # Ascend ModelZoo-TensorFlow EfficientNet_B0_ID0009: ~11,600 img/s on 8 Ascend 910.
    "ascend910-b0": System("Atlas 800, B0, mixed", "efficientnet-b0", 256, None, {8: 11600},
                           intra_bw=30e9, inter_bw=12.5e9),
}


def allreduce_seconds(system: System, n: int) -> float:
    bandwidth = system.intra_bw if n <= system.per_host else system.inter_bw
    return 2 * (n - 1) / n * GRADIENT_BYTES[system.model] / bandwidth


def fitted() -> dict:
    tf32, ascend = SYSTEMS["a100-tf32-b0"], SYSTEMS["ascend910-b0"]
    step = tf32.batch / tf32.rate + allreduce_seconds(tf32, 8)
    efficiency = tf32.published[8] * step / (8 * tf32.batch)
    per_step = efficiency * 8 * ascend.batch / ascend.published[8] - allreduce_seconds(ascend, 8)
    return {"efficiency": efficiency, "ascend910_rate": ascend.batch / per_step,
            "host_input_ceiling": SYSTEMS["a100-amp-b0"].published[16] / 2}


def project(name: str, n: int, constants: dict) -> tuple[float, float]:
    """(images/s, all-reduce share of a step) of `name` on n devices."""
    system = SYSTEMS[name]
    compute = system.batch / (system.rate or constants["ascend910_rate"])
    share = allreduce_seconds(system, n) / (compute + allreduce_seconds(system, n))
    images = (1.0 if n == 1 else constants["efficiency"]) * n * system.batch / (
        compute + allreduce_seconds(system, n))
    if name.startswith("a100"):  # the same DGX A100 hosts and AutoAugment input pipeline
        images = min(images, math.ceil(n / system.per_host) * constants["host_input_ceiling"])
    return images, share


def rows() -> list[tuple[str, int, float, float | None, float, str]]:
    """(system, devices, projected, published, all-reduce share, 'fitted' | 'input' | '')."""
    constants, out = fitted(), []
    for name, system in SYSTEMS.items():
        for n in sorted({1, 8, 64} | set(system.published)):
            role = "fitted" if (name, n) in FITS else "input" if system.rate and n == 1 else ""
            images, share = project(name, n, constants)
            out.append((name, n, images, system.published.get(n), share, role))
    return out


def table() -> str:
    lines = ["| system | devices | projected img/s | published img/s | projected / published "
             "| all-reduce share of step |", "|---|---|---|---|---|---|"]
    for name, n, images, published, share, role in rows():
        ratio = f"{images / published:.3f}" + (f" ({role})" if role else "") if published else ""
        lines.append(f"| {SYSTEMS[name].label} | {n} | {images:,.0f} | "
                     f"{f'{published:,}' if published else ''} | {ratio} | {share:.2%} |")
    c = fitted()
    return "\n".join(lines + ["", f"Fitted: efficiency {c['efficiency']:.4f}, DGX A100 host input "
                              f"ceiling {c['host_input_ceiling']:,.0f} img/s, Ascend 910 rate "
                              f"implied by its 8p figure {c['ascend910_rate']:,.0f} img/s."])


if __name__ == "__main__":
    print(table())
