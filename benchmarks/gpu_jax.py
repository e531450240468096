"""GPU benchmark: our models under the Keras JAX backend vs timm with AMP (no TensorFlow needed).

The GPU machines have JAX and PyTorch but no TensorFlow, so this module imports neither
TensorFlow nor the training engine: it builds the zoo's models (keras.layers / keras.ops only)
under `KERAS_BACKEND=jax` and trains them with a jitted stateless step.

    python -m benchmarks.gpu_jax speed --models efficientnet-b0,efficientnetv2-s --batch 128
    python -m benchmarks.gpu_jax fashion --source DIR --image_size 32 --epochs 8 --optimizer rmsprop

    python -m benchmarks.gpu_jax record --speed gpu_speed.json --probes DIR   # on this machine

`speed` prints training images/s of ours (bfloat16 mixed precision) and of timm's twin model
(torch.autocast bfloat16, channels_last), each in its own process. `fashion` trains
efficientnet-b0 on Fashion-MNIST (the Debian package's .gz files) and prints validation top-1 per
epoch: a fast way to compare recipes before spending CPU hours on the TensorFlow CLI run.
Each command prints one JSON line per measurement. `record` turns the files brought back from
the GPU machine into `results/gpu.json` + `gpu.png` and the README table rows.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

# timm names of the same architectures (same block strings and widths).
TIMM_TWINS = {"efficientnet-b0": "efficientnet_b0", "efficientnetv2-s": "tf_efficientnetv2_s"}


def _keras_jax(precision: str):
    os.environ["KERAS_BACKEND"] = "jax"
    import keras

    if keras.backend.backend() != "jax":
        raise RuntimeError("set KERAS_BACKEND=jax before keras is imported")
    keras.mixed_precision.set_global_policy(precision)
    return keras


def _tf1_rmsprop(learning_rate):
    """The engine's optimizer (recipe constants), importable without TensorFlow."""
    from efficientnet.train.rmsprop import TF1RMSprop

    return TF1RMSprop(learning_rate=learning_rate, rho=0.9, momentum=0.9, epsilon=1e-3)


def _train_step_fn(keras, model, optimizer, label_smoothing: float, weight_decay: float):
    import jax
    import jax.numpy as jnp

    decayed = [i for i, v in enumerate(model.trainable_variables)
               if len(v.shape) > 1]  # no decay on BN and biases, as the engine

    def loss_fn(trainable, non_trainable, images, labels):
        logits, non_trainable = model.stateless_call(trainable, non_trainable, images,
                                                     training=True)
        logits = logits.astype(jnp.float32)
        loss = keras.losses.categorical_crossentropy(
            labels, logits, from_logits=True, label_smoothing=label_smoothing).mean()
        if weight_decay:
            loss = loss + weight_decay * 0.5 * sum(
                jnp.sum(jnp.square(trainable[i].astype(jnp.float32))) for i in decayed)
        return loss, non_trainable

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def step(state, images, labels):
        trainable, non_trainable, optimizer_vars = state
        (loss, non_trainable), grads = grad_fn(trainable, non_trainable, images, labels)
        trainable, optimizer_vars = optimizer.stateless_apply(optimizer_vars, grads, trainable)
        return loss, (trainable, non_trainable, optimizer_vars)

    return jax.jit(step, donate_argnums=0)


def _state(model, optimizer):
    optimizer.build(model.trainable_variables)
    return ([v.value for v in model.trainable_variables],
            [v.value for v in model.non_trainable_variables],
            [v.value for v in optimizer.variables])


def speed_ours(name: str, batch: int, size: int, steps: int, warmup: int, precision: str) -> dict:
    keras = _keras_jax(precision)
    import jax
    import jax.numpy as jnp

    from efficientnet import models

    model = models.build(name, num_classes=1000, image_size=size)
    optimizer = _tf1_rmsprop(0.016 * batch / 256)
    step = _train_step_fn(keras, model, optimizer, 0.1, 1e-5)
    state = _state(model, optimizer)
    key = jax.random.PRNGKey(0)
    images = jax.random.normal(key, (batch, size, size, 3), jnp.float32)
    labels = jax.nn.one_hot(jax.random.randint(key, (batch,), 0, 1000), 1000)
    start = time.perf_counter()
    loss, state = step(state, images, labels)
    loss.block_until_ready()
    compile_s = time.perf_counter() - start
    for _ in range(warmup):
        loss, state = step(state, images, labels)
    loss.block_until_ready()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        loss, state = step(state, images, labels)
        loss.block_until_ready()
        times.append(time.perf_counter() - start)
    return {"framework": "keras-jax", "model": name, "precision": precision, "batch": batch,
            "size": size, "images_per_sec": round(batch / statistics.median(times), 1),
            "compile_s": round(compile_s, 1), "loss": float(loss),
            "device": str(jax.devices()[0]), "jax": jax.__version__,
            "keras": keras.__version__}


def speed_timm(name: str, batch: int, size: int, steps: int, warmup: int,
               compiled: bool) -> dict:
    import timm
    import torch

    torch.manual_seed(0)
    torch.backends.cudnn.benchmark = True
    device = torch.device("cuda")
    model = timm.create_model(TIMM_TWINS[name], num_classes=1000).to(device).train()
    model = model.to(memory_format=torch.channels_last)
    step_model = torch.compile(model) if compiled else model
    optimizer = torch.optim.RMSprop(model.parameters(), lr=0.016 * batch / 256, alpha=0.9,
                                    eps=1e-3, momentum=0.9, weight_decay=1e-5)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    images = torch.randn(batch, 3, size, size, device=device).to(
        memory_format=torch.channels_last)
    labels = torch.randint(0, 1000, (batch,), device=device)

    def one_step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = loss_fn(step_model(images), labels)
        loss.backward()
        optimizer.step()
        return loss

    start = time.perf_counter()
    one_step()
    torch.cuda.synchronize()
    compile_s = time.perf_counter() - start
    for _ in range(warmup):
        one_step()
    torch.cuda.synchronize()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        loss = one_step()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return {"framework": "timm-torch" + ("-compile" if compiled else ""), "model": name,
            "timm_model": TIMM_TWINS[name], "precision": "autocast-bfloat16", "batch": batch,
            "size": size, "images_per_sec": round(batch / statistics.median(times), 1),
            "compile_s": round(compile_s, 1), "loss": float(loss),
            "device": torch.cuda.get_device_name(), "torch": torch.__version__,
            "timm": timm.__version__}


def load_fashion_mnist(source: str):
    """(train_images, train_labels, test_images, test_labels): uint8 [N, 28, 28] and 0..9."""
    from tfrecord_tools.convert import read_fashion_mnist

    data = read_fashion_mnist(source)
    return (*data["train"], *data["validation"])


def fashion(source: str, model_name: str, image_size: int, epochs: int, batch: int,
            optimizer_name: str, learning_rate: float, label_smoothing: float,
            weight_decay: float, dropout: float | None, drop_connect: float | None,
            keras_applications: bool, seed: int, limit: int = 0) -> list[dict]:
    keras = _keras_jax("float32")
    import jax
    import jax.numpy as jnp
    import numpy as np

    from efficientnet import models

    keras.utils.set_random_seed(seed)
    train_x, train_y, test_x, test_y = load_fashion_mnist(source)
    if limit:  # smoke runs
        train_x, train_y, test_x, test_y = train_x[:limit], train_y[:limit], test_x[:limit], test_y[:limit]
    spec = models.get_spec(model_name)
    mean = jnp.asarray(spec.mean, jnp.float32)
    std = jnp.asarray(spec.std, jnp.float32)
    if keras_applications:
        model = keras.applications.EfficientNetB0(
            weights=None, input_shape=(image_size, image_size, 3), classes=10)
    else:
        model = models.build(model_name, num_classes=10, image_size=image_size,
                             dropout_rate=dropout, drop_connect_rate=drop_connect)
    steps_per_epoch = len(train_x) // batch
    total = epochs * steps_per_epoch
    peak = learning_rate * batch / 256
    warmup = steps_per_epoch
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0, max(total - warmup, 1), alpha=0.0, warmup_target=peak, warmup_steps=warmup)
    if optimizer_name == "rmsprop":
        optimizer = _tf1_rmsprop(schedule)
    elif optimizer_name == "adam":
        optimizer = keras.optimizers.Adam(schedule)
    else:
        optimizer = keras.optimizers.SGD(schedule, momentum=0.9, nesterov=True)
    step = _train_step_fn(keras, model, optimizer, label_smoothing, weight_decay)
    state = _state(model, optimizer)

    def prepare(images, key=None):
        x = jnp.asarray(images, jnp.float32)[..., None]
        x = jax.image.resize(x, (x.shape[0], image_size, image_size, 1), "bicubic")
        x = jnp.clip(x, 0, 255)
        if key is not None:  # flip + random shift of up to 1/8 of the side (pad, crop)
            flip_key, shift_key = jax.random.split(key)
            flip = jax.random.bernoulli(flip_key, 0.5, (x.shape[0], 1, 1, 1))
            x = jnp.where(flip, x[:, :, ::-1], x)
            pad = image_size // 8
            x = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
            dx, dy = jax.random.randint(shift_key, (2,), 0, 2 * pad + 1)
            x = jax.lax.dynamic_slice(x, (0, dy, dx, 0), (x.shape[0], image_size, image_size, 1))
        x = jnp.repeat(x, 3, axis=-1)
        return x if keras_applications else (x - mean) / std

    prepare_train = jax.jit(prepare)
    prepare_eval = jax.jit(lambda images: prepare(images))

    @jax.jit
    def predict(trainable, non_trainable, images):
        logits, _ = model.stateless_call(trainable, non_trainable, images, training=False)
        return jnp.argmax(logits, -1)

    print(json.dumps({"settings": {
        "model": model_name, "keras_applications": keras_applications, "image_size": image_size,
        "epochs": epochs, "batch": batch, "optimizer": optimizer_name,
        "learning_rate_per_256": learning_rate, "label_smoothing": label_smoothing,
        "weight_decay": weight_decay, "dropout": dropout, "drop_connect": drop_connect,
        "schedule": "1 warm-up epoch, cosine to 0", "seed": seed}}), flush=True)
    rng = np.random.default_rng(seed)
    key = jax.random.PRNGKey(seed)
    records = []
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        order = rng.permutation(len(train_x))
        losses = []
        for index in range(steps_per_epoch):
            chosen = order[index * batch:(index + 1) * batch]
            key, sub = jax.random.split(key)
            images = prepare_train(train_x[chosen], sub)
            labels = jax.nn.one_hot(train_y[chosen], 10)
            loss, state = step(state, images, labels)
            losses.append(loss)
        correct = 0
        for index in range(0, len(test_x), 500):
            predictions = predict(state[0], state[1], prepare_eval(test_x[index:index + 500]))
            correct += int((np.asarray(predictions) == test_y[index:index + 500]).sum())
        record = {"epoch": epoch, "train_loss": round(float(jnp.mean(jnp.stack(losses))), 4),
                  "top_1": correct / len(test_x),
                  "seconds": round(time.perf_counter() - start, 1)}
        print(json.dumps(record), flush=True)
        records.append(record)
    return records


_PROBE_NAME = re.compile(r"^fm_(?P<opt>[a-z_]+?)(?P<size>\d+)(?:_b(?P<batch>\d+))?")
_OPTIMIZERS = {"rms": "TF1 RMSprop recipe", "adam": "Adam", "mom": "Nesterov momentum",
               "ka_adam": "keras.applications B0, Adam"}


def record(speed_files: list[str], probe_dir: str | None, device: str) -> dict:
    """Writes results/gpu.json (+ png, README rows) from `speed` output and `fashion` logs."""
    from benchmarks import common

    speed = [row for path in speed_files for row in json.loads(Path(path).read_text())]
    summary = []
    for model in sorted({row["model"] for row in speed}):
        rows = [row for row in speed if row["model"] == model and "images_per_sec" in row]
        peer = next((row for row in rows if row["framework"] == "timm-torch"), None)
        for ours in (row for row in rows if row["framework"] == "keras-jax"):
            finite = ours["loss"] == ours["loss"]  # NaN != NaN
            line = (f"GPU {model} {ours['size']}px bs{ours['batch']}: ours (Keras on JAX, "
                    f"{ours['precision']}) {ours['images_per_sec']:.0f} img/s")
            if peer:
                line += (f" vs timm {peer['timm_model']} AMP bf16 {peer['images_per_sec']:.0f} "
                         f"img/s ({ours['images_per_sec'] / peer['images_per_sec']:.2f}x)")
            if not finite:
                line += " -- loss went NaN, figure not valid"
            summary.append(line)
    probes = {}
    if probe_dir:
        for path in sorted(Path(probe_dir).glob("fm_*.jsonl")):
            lines = [json.loads(line) for line in path.read_text().splitlines() if line]
            records = [line for line in lines if "epoch" in line]
            settings = next((line["settings"] for line in lines if "settings" in line), {})
            match = _PROBE_NAME.match(path.stem)
            if not records or not match:
                continue
            best = max(records, key=lambda r: r["top_1"])
            probes[path.stem[3:]] = {
                "optimizer": _OPTIMIZERS.get(match["opt"].rstrip("_"), match["opt"]),
                "image_size": int(match["size"]), "batch": int(match["batch"] or 128),
                "epochs_run": len(records), "epochs_planned": settings.get("epochs"),
                "final_top_1": records[-1]["top_1"], "best_top_1": best["top_1"],
                "settings": settings, "curve": records}
        for name, probe in probes.items():
            summary.append(
                f"Fashion-MNIST probe {name}: efficientnet-b0 {probe['image_size']}px "
                f"bs{probe['batch']} {probe['optimizer']}, {probe['epochs_run']} of "
                f"{probe['epochs_planned'] or '?'} epochs: top-1 {100 * probe['final_top_1']:.2f}% "
                "(no EMA)")
    versions = {key: value for row in speed for key, value in row.items()
                if key in ("jax", "keras", "torch", "timm")}
    result = {"benchmark": "gpu", "speed": speed, "fashion_probes": probes, "summary": summary,
              "machine": {"device": device, **versions, "date": common.utc_now()}}
    common.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (common.RESULTS_DIR / "gpu.json").write_text(json.dumps(result, indent=2) + "\n")
    valid = [row for row in speed if "images_per_sec" in row and row["loss"] == row["loss"]]
    common.bar_plot(
        "gpu", f"Training images/s on {device}, batch 128",
        [f"{row['model'].replace('efficientnet', 'en')}\n{row['framework']} "
         f"{row['precision'].replace('autocast-', '').replace('mixed_', '')}"
         for row in valid],
        [row["images_per_sec"] for row in valid], "images/s",
        note="ours: Keras 3 on JAX, jitted stateless step; timm: eager PyTorch, channels_last")
    common.update_readme()
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_jax", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    speed = sub.add_parser("speed", help="training images/s, ours (JAX) vs timm (AMP)")
    speed.add_argument("--models", default="efficientnet-b0,efficientnetv2-s")
    speed.add_argument("--batch", type=int, default=128)
    speed.add_argument("--steps", type=int, default=20)
    speed.add_argument("--warmup", type=int, default=5)
    speed.add_argument("--precision", default="mixed_bfloat16")
    speed.add_argument("--frameworks", default="ours,timm",
                       help="comma list of ours, timm, timm-compile (torch.compile)")
    speed.add_argument("--output", help="write all measurements to this JSON file")
    one = sub.add_parser("speed-one", help=argparse.SUPPRESS)
    one.add_argument("--framework", choices=["ours", "timm", "timm-compile"], required=True)
    one.add_argument("--model", required=True)
    one.add_argument("--batch", type=int, required=True)
    one.add_argument("--size", type=int, required=True)
    one.add_argument("--steps", type=int, required=True)
    one.add_argument("--warmup", type=int, required=True)
    one.add_argument("--precision", default="mixed_bfloat16")
    fm = sub.add_parser("fashion", help="Fashion-MNIST recipe probe (validation top-1 per epoch)")
    fm.add_argument("--source", default="/usr/share/datasets/fashion-mnist")
    fm.add_argument("--model", default="efficientnet-b0")
    fm.add_argument("--image_size", type=int, default=32)
    fm.add_argument("--epochs", type=int, default=8)
    fm.add_argument("--batch", type=int, default=128)
    fm.add_argument("--optimizer", choices=["rmsprop", "adam", "momentum"], default="rmsprop")
    fm.add_argument("--learning_rate", type=float, default=0.016, help="per 256 images")
    fm.add_argument("--label_smoothing", type=float, default=0.1)
    fm.add_argument("--weight_decay", type=float, default=1e-5)
    fm.add_argument("--dropout", type=float)
    fm.add_argument("--drop_connect", type=float)
    fm.add_argument("--keras_applications", action="store_true")
    fm.add_argument("--seed", type=int, default=0)
    fm.add_argument("--limit", type=int, default=0, help="use only this many images (smoke runs)")
    rec = sub.add_parser("record", help="write results/gpu.json from files brought back")
    rec.add_argument("--speed", action="append", default=[], help="JSON list from `speed`")
    rec.add_argument("--probes", help="folder of fm_<name>.jsonl logs from `fashion`")
    rec.add_argument("--device", default="NVIDIA H100 80GB HBM3")
    args = parser.parse_args(argv)

    if args.command == "record":
        for line in record(args.speed, args.probes, args.device)["summary"]:
            print(line)
        return 0
    if args.command == "speed-one":
        if args.framework == "ours":
            result = speed_ours(args.model, args.batch, args.size, args.steps, args.warmup,
                                args.precision)
        else:
            result = speed_timm(args.model, args.batch, args.size, args.steps, args.warmup,
                                args.framework == "timm-compile")
        print(json.dumps(result), flush=True)
        return 0
    if args.command == "speed":
        from efficientnet.models import get_spec

        results = []
        for name in args.models.split(","):
            size = get_spec(name).train_size
            for framework in args.frameworks.split(","):
                # One process each: JAX and PyTorch each claim most of the GPU memory.
                proc = subprocess.run(
                    [sys.executable, "-m", "benchmarks.gpu_jax", "speed-one",
                     f"--framework={framework}", f"--model={name}", f"--batch={args.batch}",
                     f"--size={size}", f"--steps={args.steps}", f"--warmup={args.warmup}",
                     f"--precision={args.precision}"], capture_output=True, text=True)
                if proc.returncode != 0:
                    result = {"framework": framework, "model": name,
                              "error": proc.stderr.strip().splitlines()[-1:]}
                else:
                    result = json.loads(proc.stdout.strip().splitlines()[-1])
                print(json.dumps(result), flush=True)
                results.append(result)
        if args.output:
            Path(args.output).write_text(json.dumps(results, indent=2) + "\n")
        return 0
    fashion(args.source, args.model, args.image_size, args.epochs, args.batch, args.optimizer,
            args.learning_rate, args.label_smoothing, args.weight_decay, args.dropout,
            args.drop_connect, args.keras_applications, args.seed, args.limit)
    return 0


if __name__ == "__main__":
    sys.exit(main())
