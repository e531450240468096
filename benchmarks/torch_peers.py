"""PyTorch / timm peers, run in their own process (torch and TensorFlow in one process crash):
`python -m benchmarks.torch_peers train|onnx ...` prints one JSON line, which `run_peer` returns."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import time


def run_peer(*args: str, timeout: int = 1800) -> dict | None:
    """This module's JSON line for `args`, from a subprocess; None without torch and timm."""
    if not all(importlib.util.find_spec(name) for name in ("torch", "timm")):
        print("torch / timm not installed (pip install -e '.[bench]'): no PyTorch peer",
              file=sys.stderr)
        return None
    from benchmarks.common import json_line

    return json_line([sys.executable, "-m", "benchmarks.torch_peers", *args],
                     f"torch peer {' '.join(args)}", timeout)


def train_speed(model_name: str, batch: int, size: int, steps: int, warmup: int,
                device: str) -> dict:
    """images/s of timm `model_name` trained with the engine's RMSProp settings: float32 on the
    CPU, bf16 autocast on a GPU; the median of `steps` timed steps after `warmup`."""
    import timm
    import torch

    torch.manual_seed(0)
    torch.set_num_threads(os.cpu_count() or 1)
    torch.backends.cudnn.benchmark = True
    model = timm.create_model(model_name, num_classes=1000).to(device).train()
    model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.RMSprop(model.parameters(), lr=0.016 * batch / 256, alpha=0.9,
                                    eps=1e-3, momentum=0.9, weight_decay=1e-5)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    images = torch.randn(batch, 3, size, size, device=device).to(
        memory_format=torch.channels_last)
    labels = torch.randint(0, 1000, (batch,), device=device)
    times = []
    for index in range(warmup + steps):
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
            loss = loss_fn(model(images), labels)
        loss.backward()
        optimizer.step()
        if device == "cuda":
            torch.cuda.synchronize()
        if index >= warmup:
            times.append(time.perf_counter() - start)
    return {"framework": "timm-torch", "timm_model": model_name, "batch": batch, "size": size,
            "precision": "autocast-bfloat16" if device == "cuda" else "float32",
            "images_per_sec": round(batch / statistics.median(times), 1), "loss": float(loss),
            "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
            "threads": torch.get_num_threads(), "torch": torch.__version__,
            "timm": timm.__version__}


def export_onnx(size: int, output: str) -> dict:
    """timm's B0 as ONNX doing our export's job: NHWC pixels in [0, 255] -> probabilities,
    with timm's own normalisation constants (its models take normalised tensors)."""
    import timm
    import torch

    class PixelsToProbabilities(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model
            config = model.pretrained_cfg
            self.register_buffer("mean", 255 * torch.tensor(config["mean"]).view(1, 3, 1, 1))
            self.register_buffer("std", 255 * torch.tensor(config["std"]).view(1, 3, 1, 1))

        def forward(self, pixels):
            images = (pixels.permute(0, 3, 1, 2) - self.mean) / self.std
            return torch.softmax(self.model(images), dim=-1)

    model = PixelsToProbabilities(timm.create_model("efficientnet_b0", num_classes=1000)).eval()
    with torch.no_grad():
        torch.onnx.export(model, 255 * torch.rand(1, size, size, 3), output,
                          input_names=["images"], output_names=["probabilities"],
                          dynamic_axes={"images": {0: "batch"}}, opset_version=17, dynamo=False)
    return {"path": output, "torch": torch.__version__, "timm": timm.__version__}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.torch_peers")
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train")
    train.add_argument("--model", default="efficientnet_b0", help="timm model name")
    train.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    train.add_argument("--batch", type=int, default=32)
    train.add_argument("--steps", type=int, default=5)
    train.add_argument("--warmup", type=int, default=2)
    onnx = sub.add_parser("onnx")
    onnx.add_argument("--output", required=True)
    for command in (train, onnx):
        command.add_argument("--size", type=int, default=224)
    args = parser.parse_args(argv)
    if args.command == "train":
        result = train_speed(args.model, args.batch, args.size, args.steps, args.warmup,
                             args.device)
    else:
        result = export_onnx(args.size, args.output)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
