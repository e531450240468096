"""`make demo`: Fashion-MNIST -> TFRecords -> train a small EfficientNet on CPU -> eval -> export.

    python -m efficientnet.demo [--output_dir demo_output] [--train_steps 300] [--no_export]

Each stage says where its output went; a stage whose module is not installed says so and the
demo goes on with what it has (synthetic data when the converter is missing).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from efficientnet import quiet_tensorflow_logs

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


def train(model_dir: str, data_dir: str | None, train_steps: int, batch_size: int,
          image_size: int) -> dict:
    from efficientnet.train import trainer
    from efficientnet.train.recipes import get_recipe

    config = get_recipe(
        "tpu-rmsprop", model_name="efficientnet-b0", model_dir=model_dir, data_dir=data_dir,
        use_synthetic_data=data_dir is None, mode="train_and_eval", image_size=image_size,
        num_label_classes=10, train_batch_size=batch_size, eval_batch_size=250,
        train_steps=train_steps, iterations_per_loop=min(50, train_steps),
        steps_per_eval=train_steps, num_train_images=60000, num_eval_images=10000,
        # A run of minutes: half the TPU recipe's learning rate per 256 images (300 steps at
        # the full 0.016 evaluated at 59-70 % top-1 over 4 runs, at 0.008 at 75.8-80.5 % over 4),
        # a short warm-up and a cosine decay, no dropout or drop-connect (they slow a run this
        # short down), and BN statistics recomputed for the EMA weights before eval and export
        # (momentum-0.99 statistics trail the weights of 300 steps: near chance without it).
        base_learning_rate=0.008, lr_schedule="cosine", warmup_epochs=0.05,
        moving_average_decay=0.999, dropout_rate=0.0, drop_connect_rate=0.0,
        precise_bn_batches=20, keep_checkpoint_max=2,
        # 28 px images: evaluate the whole image and train on the whole image too (flips only).
        crop_padding=0, min_crop_area=1.0)
    result = trainer.run(config.validate())
    return result.eval_results or {}


def export(model_dir: str, export_dir: str, data_dir: str | None, image_size: int) -> str:
    try:
        from efficientnet.export.__main__ import main as export_main
    except ImportError as error:
        return f"efficientnet.export is not available yet ({error}); skipped"
    args = ["--model_name=efficientnet-b0", f"--model_dir={model_dir}",
            f"--export_dir={export_dir}", "--num_label_classes=10", f"--image_size={image_size}",
            "--formats=saved_model,tflite,tflite_int8", "--num_steps=20", "--crop_padding=0",
            "--num_eval_images=200"]
    if data_dir:
        args.append(f"--data_dir={data_dir}")
    status = export_main(args)
    return f"exported to {export_dir}" if status == 0 else f"export failed (status {status})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m efficientnet.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", default="demo_output")
    parser.add_argument("--train_steps", type=int, default=300,
                        help="about 3-5 minutes on 2 CPU cores at the defaults")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--image_size", type=int, default=32)
    parser.add_argument("--no_export", action="store_true")
    args = parser.parse_args(argv)

    output = os.path.abspath(args.output_dir)
    data_dir = os.path.join(output, "data")
    model_dir = os.path.join(output, "model")
    export_dir = os.path.join(output, "export")
    os.makedirs(output, exist_ok=True)

    _banner("1/3 data: Fashion-MNIST -> TFRecords")
    have_data = convert_data(data_dir)
    _banner(f"2/3 train + eval: efficientnet-b0 at {args.image_size} px, 10 classes, "
            f"{args.train_steps} steps of {args.batch_size}")
    results = train(model_dir, data_dir if have_data else None, args.train_steps,
                    args.batch_size, args.image_size)
    _banner("3/3 export")
    export_status = "skipped (--no_export)" if args.no_export else export(
        model_dir, export_dir, data_dir if have_data else None, args.image_size)
    print(export_status)

    _banner("where everything went")
    print(f"data:        {data_dir if have_data else '(synthetic data, nothing written)'}")
    print(f"checkpoints: {model_dir}  (ckpt-<step>, config.json)")
    print(f"log:         {os.path.join(model_dir, 'metrics.jsonl')}; TensorBoard: "
          f"tensorboard --logdir {model_dir}")
    print(f"eval:        {os.path.join(model_dir, 'eval_results.json')}: "
          + json.dumps({k: results.get(k) for k in ("top_1_accuracy", "top_5_accuracy",
                                                    "global_step")}))
    print(f"export:      {export_status}")
    print(f"again:       MODEL_DIR={model_dir} bash test.sh eval")
    return 0


if __name__ == "__main__":
    sys.exit(main())
