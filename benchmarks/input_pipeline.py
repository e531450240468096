"""Input pipeline and conversion speed, per CPU core, measured in one run.

- `efficientnet.data.build_dataset` training input at 224 px, batch 32, on ImageNet-sized JPEG
  records (500x375, generated) of two kinds: photo-like ones encoded as ImageNet's are (quality
  96, no chroma subsampling, ~112 KB; the headline) and light ones (smooth, quality 90, 4:2:0,
  ~47 KB, cheaper to decode): plain decode + random crop + flip, then + AutoAugment,
  + RandAugment (2 layers, magnitude 10); the cost of each augmentation relative to plain,
  from the best reading of each over interleaved rounds and as the median of the rounds' paired
  costs (each round's augmented reading against the plain one taken just before it). Measured in
  a fresh process set up as training sets itself up: TensorFlow's default thread pools, the
  pipeline's CPU XLA programs on one thread each (efficientnet.data.cpu_xla).
- What each augmentation op costs: every op applied to every image of a batch in the compiled
  batch program the pipeline runs (one thread, its own process), per image net of the program
  that leaves the images as they are, and from that table the op cost a policy adds per image
  on average (each op weighted by how often the policy applies it).
- `tfrecord_tools.convert_folder` (worker processes) against a baseline that converts one image
  at a time with threads the way the TF-models `build_imagenet_data.py` does (TensorFlow decode
  of every image to check it, a tf.train.Example, one TFRecordWriter per thread), on 10,000
  files (the 2,000 JPEGs, each hard-linked 5 times: ours converts 2,000 in ~0.1 s, a span in
  which its fixed start-up and one slow moment of a shared host weigh), in interleaved rounds:
  best of each and the median of the rounds' paired ratios.

    python -m benchmarks run --only input [--quick]
    python benchmarks/input_pipeline.py [--quick]
    python benchmarks/input_pipeline.py --op_costs    # the op table alone
    python benchmarks/input_pipeline.py --compare_jpegs    # light vs photo-like (ImageNet) JPEGs
    python benchmarks/input_pipeline.py --program_threads  # batch programs by thread setting
    python benchmarks/input_pipeline.py --pipeline_threads  # whole pipelines by thread setting
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

WIDTH, HEIGHT, SIZE, BATCH = 500, 375, 224, 32
CONVERSION_COPIES = 5  # conversion: each JPEG hard-linked this many times


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _smooth_image(rng, width: int, height: int) -> np.ndarray:
    """uint8 [height, width, 3]: coarse colour fields resized bicubically, plus noise."""
    from PIL import Image

    coarse = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    image = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BICUBIC))
    noise = rng.normal(0, 6, (height, width, 3))
    return np.clip(image + noise, 0, 255).astype(np.uint8)


def _photo_like_image(rng, width: int, height: int) -> np.ndarray:
    """uint8 [height, width, 3] with a natural image's 1/f^1.4 amplitude spectrum and correlated
    colour channels: encoded as `make_images(kind="photo")` does, ~112 KB at 500x375."""
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    frequency = np.sqrt(fx**2 + fy**2)
    frequency[0, 0] = 1.0
    channels = []
    for _ in range(3):
        spectrum = (rng.normal(size=frequency.shape)
                    + 1j * rng.normal(size=frequency.shape)) / frequency**1.4
        spectrum[0, 0] = 0.0
        channel = np.fft.irfft2(spectrum, s=(height, width))
        channels.append(channel / channel.std())
    mixed = np.stack(channels, -1) @ (np.eye(3) + 0.3 * rng.normal(size=(3, 3))).T
    return np.clip(128 + 24 * mixed / mixed.std(), 0, 255).astype(np.uint8)


# JPEG kinds: "light", the benchmark's default (smooth fields, quality 90, 4:2:0 chroma, ~47 KB),
# and "photo", encoded as most ImageNet JPEGs are (quality 96, no chroma subsampling) with a
# natural spectrum, ~112 KB (ImageNet's train set: ~110 KB per image on average).
JPEG_KINDS = {"light": (_smooth_image, 90, 2), "photo": (_photo_like_image, 96, 0)}


def make_images(directory: str, count: int, classes: int = 4, kind: str = "light") -> list[str]:
    """ImageNet-sized JPEGs of `kind` (JPEG_KINDS) in class folders; returns their paths."""
    from PIL import Image

    draw, quality, subsampling = JPEG_KINDS[kind]
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        image = Image.fromarray(draw(rng, WIDTH, HEIGHT))
        folder = os.path.join(directory, f"class{i % classes}")
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f"{i:05d}.jpg")
        image.save(path, "JPEG", quality=quality, subsampling=subsampling)
        paths.append(path)
    return paths


def pipeline_reading(pattern: str, augment_name: str | None,
                     batches: int) -> tuple[float, float]:
    """(images/s, ms of this process's CPU per image: user + system, all threads) of a training
    pipeline over `batches` batches after warm-up."""
    import tensorflow as tf

    from efficientnet.data import DataConfig, build_dataset
    from efficientnet.models import get_spec

    # Seeded: every run draws the same crops and augmentation ops, so runs compare.
    config = DataConfig(image_size=SIZE, num_label_classes=4, augment_name=augment_name,
                        shuffle_buffer=256, seed=0)
    dataset = build_dataset(pattern, True, BATCH, get_spec("efficientnet-b0"), config)
    iterator = iter(dataset)
    for _ in range(3):  # warm-up: tracing, autotune, shuffle buffer fill
        next(iterator)
    cpu, start = _process_cpu_seconds(), time.perf_counter()
    for _ in range(batches):
        images, _ = next(iterator)
    wall, cpu = time.perf_counter() - start, _process_cpu_seconds() - cpu
    tf.debugging.assert_all_finite(images, "pipeline output")
    return batches * BATCH / wall, cpu / (batches * BATCH) * 1e3


def _process_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def interleaved_rounds(contenders: dict, batches: int, rounds: int) -> dict:
    """`pipeline_reading(pattern, augment_name, batches)` for each name: (pattern,
    augment_name), in `rounds` interleaved rounds (contenders in order within a round):
    {"images_per_sec": {name: [each round's]}, "cpu_ms_per_image": {name: [...]}}."""
    rates: dict = {name: [] for name in contenders}
    cpu: dict = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, (pattern, augment_name) in contenders.items():
            rate, cpu_ms = pipeline_reading(pattern, augment_name, batches)
            rates[name].append(rate)
            cpu[name].append(cpu_ms)
    return {"images_per_sec": rates, "cpu_ms_per_image": cpu}


def paired_ratio(rates: dict, name, reference) -> float:
    """Median over rounds of rate[name] / rate[reference] within the same round."""
    return float(np.median([a / b for a, b in zip(rates[name], rates[reference])]))


def paired_cost(rates: dict, name, reference) -> float:
    """Median over rounds of 1 - rate[name] / rate[reference] within the same round: each
    ratio compares readings taken seconds apart, so a slow spell of a shared host moves both
    sides of one ratio (and the median shrugs off an odd round), where the best-of-each ratio
    may pair readings from different rounds."""
    return 1 - paired_ratio(rates, name, reference)  # the median of 1 - r is 1 - that of r


IDENTITY_OP = "Identity"
OP_COST_LEVEL = 5.0  # magnitude on the 0..10 scale; these ops cost the same at any level


def smooth_images(count: int, size: int = SIZE, seed: int = 0) -> np.ndarray:
    """uint8 [count, size, size, 3]: the pipeline's kind of content (`make_images`' pictures),
    without a JPEG round trip."""
    rng = np.random.default_rng(seed)
    return np.stack([_smooth_image(rng, size, size) for _ in range(count)])


def forced_op_batch_fn(name: str, level: float = OP_COST_LEVEL):
    """A compiled fn(uint8 images, seeds) applying op `name` (or IDENTITY_OP) to every image,
    through the same per-image loop and op selection as the pipeline's batch program (the op
    index is a tensor, so the selection is not folded away)."""
    import tensorflow as tf

    from efficientnet.data import augment

    index = augment.IDENTITY if name == IDENTITY_OP else augment.OP_NAMES.index(name)

    def augment_fn(image, seed):
        # The seeds are never negative, but XLA cannot tell: the Case stays a Case, as in the
        # policies (a constant index would let XLA inline the op into the loop body).
        op = tf.where(seed[0] < 0, augment.IDENTITY, index)
        return augment.apply_op_by_index(op, image, level, seed, augment.AUTOAUGMENT_CONSTS)

    return tf.function(lambda images, seeds: augment.augment_batch(images, seeds, augment_fn),
                       jit_compile=True, autograph=False)


def measure_op_costs(ops, rounds: int = 5, calls: int = 20, batch: int = BATCH) -> dict:
    """{op: ms of CPU per image net of the identity program, "loop": the identity program's ms
    per image}: best of `rounds` interleaved rounds of `calls` calls on one batch."""
    import tensorflow as tf

    images = tf.constant(smooth_images(batch))
    seeds = tf.constant(np.random.default_rng(1).integers(0, 2**31 - 1, (batch, 2)), tf.int32)
    names = [IDENTITY_OP] + [op for op in ops if op != IDENTITY_OP]
    programs = {name: forced_op_batch_fn(name) for name in names}
    for program in programs.values():  # compile
        program(images, seeds).numpy()
    best = {name: float("inf") for name in names}
    for _ in range(rounds):
        for name, program in programs.items():
            start = time.process_time()
            for _ in range(calls):
                output = program(images, seeds)
            output.numpy()
            best[name] = min(best[name], (time.process_time() - start) / calls / batch * 1e3)
    loop = best.pop(IDENTITY_OP)
    return {"loop": round(loop, 4),
            **{name: round(max(value - loop, 0.0), 4) for name, value in best.items()}}


def expected_op_cost(costs: dict, num_layers: int = 2) -> dict:
    """Average op cost per image of AutoAugment v0 (each sub-policy drawn with probability 1/25,
    each of its ops applied with its probability) and of RandAugment (`num_layers` ops drawn
    uniformly), from per-op `costs`; with each op's share of the AutoAugment figure."""
    from efficientnet.data import augment

    shares: dict = {}
    for sub_policy in augment.POLICY_V0:
        for name, probability, _ in sub_policy:
            shares[name] = shares.get(name, 0.0) + probability * costs[name] / len(
                augment.POLICY_V0)
    autoaugment = sum(shares.values())
    randaugment = num_layers * sum(costs[name] for name in augment.RANDAUGMENT_OPS) / len(
        augment.RANDAUGMENT_OPS)
    return {"autoaugment": autoaugment, "randaugment": randaugment,
            "autoaugment_share": {name: value / autoaugment if autoaugment else 0.0
                                  for name, value in sorted(shares.items())}}


def op_costs_in_subprocess(rounds: int, calls: int) -> dict:
    """measure_op_costs for every op, in a fresh process on one TensorFlow thread (per-core
    costs; this process may already run TensorFlow with its default thread pools)."""
    return _child_json("--op_costs", f"--rounds={rounds}", f"--calls={calls}")


def _child_json(*flags: str):
    """`python -m benchmarks.input_pipeline FLAGS` in a fresh process (from the repository
    root): the JSON of the last line it prints."""
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks.input_pipeline", *flags],
        check=True, capture_output=True, text=True,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return json.loads(completed.stdout.strip().splitlines()[-1])


def kinds_rounds_in_subprocess(patterns: dict, batches: int, rounds: int) -> dict:
    """kinds_rounds on {kind: records pattern} in a fresh process set up as training (TensorFlow's
    default pools, CPU XLA programs on one thread each)."""
    return _child_json("--compare_jpegs_child", f"--records={json.dumps(patterns)}",
                       f"--batches={batches}", f"--rounds={rounds}")


def measure_batch_programs(rounds: int = 5, calls: int = 20, batch: int = BATCH) -> dict:
    """{program: {"cpu_ms": ..., "wall_ms": ..., "context_switches"}: per image, best of `rounds`
    of `calls` calls on one batch} for the pipeline's two batch programs as `build_dataset` builds
    them: "normalize" (plain) and "autoaugment" (augment + normalise), each image with its own
    seed, under this process's TensorFlow thread settings."""
    import tensorflow as tf

    from efficientnet.data import DataConfig, pipeline
    from efficientnet.models import get_spec

    spec = get_spec("efficientnet-b0")
    images = tf.constant(smooth_images(batch))
    seeds = tf.constant(np.random.default_rng(1).integers(0, 2**31 - 1, (batch, 2)), tf.int32)
    labels = tf.zeros([batch, 4])
    augmented = pipeline._augment_batch_fn(spec, DataConfig(augment_name="autoaugment",
                                                            num_label_classes=4))
    normalize = pipeline._normalize_batch_fn(spec)
    programs = {"normalize": lambda: normalize(tf.cast(images, tf.float32), labels)[0],
                "autoaugment": lambda: augmented(tf.cast(images, tf.float32), labels, seeds)[0]}
    result = {}
    for name, program in programs.items():
        program().numpy()  # compile
        best = None
        for _ in range(rounds):
            before = resource.getrusage(resource.RUSAGE_SELF)
            cpu, wall = time.process_time(), time.perf_counter()
            for _ in range(calls):
                output = program()
            output.numpy()
            after = resource.getrusage(resource.RUSAGE_SELF)
            count = calls * batch
            reading = ((time.process_time() - cpu) / count * 1e3,
                       (time.perf_counter() - wall) / count * 1e3,
                       (after.ru_nvcsw + after.ru_nivcsw - before.ru_nvcsw - before.ru_nivcsw)
                       / count)
            best = reading if best is None else min(best, reading)
        result[name] = {"cpu_ms": round(best[0], 4), "wall_ms": round(best[1], 4),
                        "context_switches": round(best[2], 2)}
    return result


# (label, child flags): "training" is how training runs (TensorFlow's default pools, CPU XLA
# programs on one thread each), "xla_on_intra_op_pool" lets XLA split its loops over the default
# intra-op pool (as before efficientnet.data.cpu_xla), "one_thread" gives TensorFlow one intra-op
# thread (the setting for a host whose CPU only feeds an accelerator).
_THREAD_SETTINGS = (("training", ()), ("xla_on_intra_op_pool", ("--xla_on_intra_op_pool",)),
                    ("one_thread", ("--intra_op_threads=1",)))


def batch_programs_by_threads() -> dict:
    """measure_batch_programs in a fresh process for each of _THREAD_SETTINGS."""
    return {label: _child_json("--program_threads_child", *flags)
            for label, flags in _THREAD_SETTINGS}


def pipeline_rates(rounds: int = 3, batches: int = 60, num_images: int = 1000) -> dict:
    """{"plain": [images/s/core per round], "autoaugment": [...]}: interleaved rounds in this
    process, under its TensorFlow thread settings."""
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_images(os.path.join(tmp, "images"), num_images)
        pattern = _jpeg_records(paths, _fresh(tmp, "records"))
        rates = interleaved_rounds({"plain": (pattern, None),
                                    "autoaugment": (pattern, "autoaugment")}, batches,
                                   rounds)["images_per_sec"]
    return {name: [round(rate / _cores(), 1) for rate in values] for name, values in rates.items()}


def pipelines_by_threads(processes: int = 4) -> dict:
    """pipeline_rates in `processes` fresh processes for each of _THREAD_SETTINGS, the settings
    alternating; per setting, the medians and the median of the paired costs."""
    readings: dict = {label: {"plain": [], "autoaugment": []} for label, _ in _THREAD_SETTINGS}
    for _ in range(processes):
        for label, flags in _THREAD_SETTINGS:
            child = _child_json("--pipeline_threads_child", *flags)
            for name, values in child.items():
                readings[label][name].extend(values)
    return {label: {"plain_median": float(np.median(rates["plain"])),
                    "autoaugment_median": float(np.median(rates["autoaugment"])),
                    "autoaugment_cost_paired_median": round(
                        paired_cost(rates, "autoaugment", "plain"), 3),
                    "readings": len(rates["plain"]), **rates}
            for label, rates in readings.items()}


def baseline_convert(paths: list[str], output_directory: str, num_threads: int) -> float:
    """The TF-models converter's approach: threads, one image at a time, TF decode to check."""
    import tensorflow as tf

    def bytes_feature(value):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))

    def int_feature(value):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))

    def work(thread_index, thread_paths):
        path = os.path.join(output_directory, f"train-{thread_index:05d}-of-{num_threads:05d}")
        with tf.io.TFRecordWriter(path) as writer:
            for label, filename in thread_paths:
                with tf.io.gfile.GFile(filename, "rb") as f:
                    data = f.read()
                image = tf.io.decode_jpeg(data, channels=3)
                height, width = int(image.shape[0]), int(image.shape[1])
                example = tf.train.Example(features=tf.train.Features(feature={
                    "image/height": int_feature(height), "image/width": int_feature(width),
                    "image/colorspace": bytes_feature(b"RGB"), "image/channels": int_feature(3),
                    "image/class/label": int_feature(label),
                    "image/class/synset": bytes_feature(b"class"),
                    "image/format": bytes_feature(b"JPEG"),
                    "image/filename": bytes_feature(os.path.basename(filename).encode()),
                    "image/encoded": bytes_feature(data)}))
                writer.write(example.SerializeToString())

    labelled = [(1 + i % 4, p) for i, p in enumerate(paths)]
    threads = [threading.Thread(target=work, args=(t, labelled[t::num_threads]))
               for t in range(num_threads)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return len(paths) / (time.perf_counter() - start)


def linked_copies(source_directory: str, directory: str, copies: int) -> list[str]:
    """Every file under `source_directory` `copies` times under `directory`, in the same class
    folders (hard links; copies where the file system has none); returns the new paths."""
    paths = []
    for root, _, files in sorted(os.walk(source_directory)):
        folder = os.path.join(directory, os.path.relpath(root, source_directory))
        os.makedirs(folder, exist_ok=True)
        for copy in range(copies):
            for name in sorted(files):
                source, target = os.path.join(root, name), os.path.join(folder, f"{copy}_{name}")
                try:
                    os.link(source, target)
                except OSError:
                    shutil.copyfile(source, target)
                paths.append(target)
    return paths


def ours_convert(input_directory: str, output_directory: str, workers: int,
                 full_decode: bool = False) -> tuple[float, float]:
    """`python -m tfrecord_tools folder` as users run it, in its own process (this one has
    TensorFlow loaded, which the CLI never needs). Returns (images/s over the conversion the
    report times, images/s over the whole command including interpreter start-up)."""
    args = [sys.executable, "-m", "tfrecord_tools", "folder", "--quiet",
            f"--input_directory={input_directory}", f"--output_directory={output_directory}",
            "--validation_fraction=0", f"--train_shards={workers}", f"--num_workers={workers}"]
    if full_decode:
        args.append("--full_decode")
    start = time.perf_counter()
    subprocess.run(args, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - start
    with open(os.path.join(output_directory, "conversion_report.json")) as f:
        report = json.load(f)
    written = report["written"]["train"]
    return written / report["seconds"], written / wall


def _jpeg_records(paths: list[str], output_directory: str) -> str:
    import tensorflow as tf

    from tfrecord_tools.example import image_example

    shards = 4
    for shard in range(shards):
        name = os.path.join(output_directory, f"train-{shard:05d}-of-{shards:05d}")
        with tf.io.TFRecordWriter(name) as writer:
            for i in range(shard, len(paths), shards):
                with open(paths[i], "rb") as f:
                    writer.write(image_example(f.read(), HEIGHT, WIDTH, 1 + i % 4))
    return os.path.join(output_directory, "train-*")


def run(quick: bool = False, plot: bool = True) -> dict:
    cores = _cores()
    num_images = 400 if quick else 2000
    batches = 8 if quick else 200
    rounds = 1 if quick else 7  # the host's slow spells last seconds: many paired rounds
    result: dict = {"cores": cores, "image_size": SIZE, "batch_size": BATCH,
                    "pipeline_batches": batches, "pipeline_rounds": rounds,
                    "source_images": f"{num_images} JPEGs {WIDTH}x{HEIGHT} q90"}
    with tempfile.TemporaryDirectory() as tmp:
        images_dir = os.path.join(tmp, "images")
        paths = make_images(images_dir, num_images)
        # The pipelines on both JPEG kinds, the ImageNet-like one as the headline (its JPEGs
        # decode as ImageNet's do; the light ones, the conversion's images, cost less to decode,
        # so the same augmentation weighs more against them).
        photo_paths = make_images(os.path.join(tmp, "photo"), num_images // 2, kind="photo")
        patterns = {"photo": _jpeg_records(photo_paths, _fresh(tmp, "photo_records")),
                    "light": _jpeg_records(paths, _fresh(tmp, "records"))}
        sizes = {"photo": _mean_kb(photo_paths), "light": _mean_kb(paths)}
        readings = kinds_rounds_in_subprocess(patterns, batches, rounds)
        result["pipeline_by_jpeg_kind"] = summarize_kinds(readings, sizes, cores)
        result.update({f"pipeline_{k}": v for k, v in _per_round(readings).items()})
        headline = result["pipeline_by_jpeg_kind"]["photo"]
        result["pipeline_images"] = (f"{len(photo_paths)} photo-like JPEGs (ImageNet-encoded, "
                                     f"{sizes['photo']:.0f} KB on average)")
        result["pipeline_images_per_sec_per_core"] = headline["images_per_sec_per_core"]
        result["augmentation_cost"] = headline["cost"]
        result["augmentation_cost_paired_median"] = headline["cost_paired_median"]
        result["augmentation_cpu_cost_paired_median"] = headline["cpu_cost_paired_median"]

        # Interleaved rounds on CONVERSION_COPIES links of every JPEG; each output is deleted
        # after its reading (10,000 records are ~0.5 GB).
        repeats = 1 if quick else 3
        copies = 1 if quick else CONVERSION_COPIES
        conversion_dir = os.path.join(tmp, "conversion")
        conversion_paths = linked_copies(images_dir, conversion_dir, copies)
        result["conversion_repeats"] = repeats
        result["conversion_images"] = len(conversion_paths)
        conversion = {"baseline": [], "ours": [], "ours_wall": [], "ours_full": []}

        def reading(name: str, convert):
            """convert(a fresh output directory), which is deleted afterwards."""
            output = _fresh(tmp, name)
            try:
                return convert(output)
            finally:
                shutil.rmtree(output)

        for i in range(repeats):
            conversion["baseline"].append(reading(f"baseline{i}", lambda out: baseline_convert(
                conversion_paths, out, num_threads=cores)))
            rate, wall_rate = reading(f"ours{i}", lambda out: ours_convert(
                conversion_dir, out, cores))
            conversion["ours"].append(rate)
            conversion["ours_wall"].append(wall_rate)
            conversion["ours_full"].append(reading(f"ours_full{i}", lambda out: ours_convert(
                conversion_dir, out, cores, full_decode=True)[0]))
        baseline, ours, ours_wall, ours_full = (
            max(conversion[k]) for k in ("baseline", "ours", "ours_wall", "ours_full"))
        result["conversion_images_per_sec_per_round"] = {
            k: [round(rate, 1) for rate in v] for k, v in conversion.items()}
        result["conversion_speedup_paired_median"] = round(
            paired_ratio(conversion, "ours", "baseline"), 2)
    op_costs = op_costs_in_subprocess(rounds=2 if quick else 5, calls=5 if quick else 20)
    expected = expected_op_cost(op_costs)
    result["augment_op_ms_per_image"] = op_costs
    result["augment_op_conditions"] = (f"batch {BATCH} at {SIZE} px in one compiled call, one "
                                       f"thread, magnitude {OP_COST_LEVEL:g}, CPU ms per image "
                                       "net of the loop ('loop': the loop itself)")
    result["augment_expected_op_ms_per_image"] = {
        "autoaugment": round(expected["autoaugment"], 4),
        "randaugment": round(expected["randaugment"], 4)}
    result["autoaugment_op_share"] = {k: round(v, 3)
                                      for k, v in expected["autoaugment_share"].items()}
    result["conversion_images_per_sec_per_core"] = {
        "tfrecord_tools": round(ours / cores, 1),
        "tfrecord_tools, whole command": round(ours_wall / cores, 1),
        "tfrecord_tools --full_decode": round(ours_full / cores, 1),
        "baseline (TF-models style threads)": round(baseline / cores, 1)}
    result["conversion_speedup"] = round(ours / baseline, 2)
    result["conversion_speedup_full_decode"] = round(ours_full / baseline, 2)
    result["conversion_speedup_whole_command"] = round(ours_wall / baseline, 2)
    per_core = result["pipeline_images_per_sec_per_core"]
    cost, paired = result["augmentation_cost"], result["augmentation_cost_paired_median"]
    cpu_cost = result["augmentation_cpu_cost_paired_median"]
    light = result["pipeline_by_jpeg_kind"]["light"]
    result["summary"] = [
        f"train input at {SIZE} px on ImageNet-like JPEGs: {per_core['plain']:.0f} images/s/core "
        f"plain, {per_core['autoaugment']:.0f} with AutoAugment ({cost['autoaugment']:+.1%}), "
        f"{per_core['randaugment']:.0f} with RandAugment ({cost['randaugment']:+.1%}); "
        f"paired median of {rounds} rounds: {paired['autoaugment']:+.1%} / "
        f"{paired['randaugment']:+.1%}; in CPU per image (paired median): "
        f"{cpu_cost['autoaugment']:+.1%} / {cpu_cost['randaugment']:+.1%}",
        f"on light JPEGs ({sizes['light']:.0f} KB): {light['images_per_sec_per_core']['plain']:.0f}"
        f" images/s/core plain; AutoAugment {light['cost']['autoaugment']:+.1%} (paired "
        f"{light['cost_paired_median']['autoaugment']:+.1%}), RandAugment "
        f"{light['cost']['randaugment']:+.1%} ({light['cost_paired_median']['randaugment']:+.1%})",
        f"conversion: {ours / cores:.0f} images/s/core vs {baseline / cores:.0f} for the "
        f"TF-models-style baseline ({ours / baseline:.1f}x; paired median of {repeats} rounds "
        f"{result['conversion_speedup_paired_median']:.1f}x; {ours_wall / baseline:.1f}x timing "
        f"the whole command; {ours_full / baseline:.1f}x with --full_decode)",
        _op_summary(op_costs, expected),
    ]
    if not plot:
        return result
    try:
        from benchmarks import common

        common.bar_plot("input", f"Conversion, images/s per core ({cores} cores)",
                        list(result["conversion_images_per_sec_per_core"]),
                        list(result["conversion_images_per_sec_per_core"].values()),
                        "images / s / core", note=(
                            f"{result['conversion_images']} files: {result['source_images']}, "
                            f"each {copies} times; best of {repeats} interleaved rounds"))
        ops = _ops_by_cost(op_costs)
        common.bar_plot("input_ops", "Augmentation op cost, ms of CPU per 224 px image",
                        ops, [op_costs[k] for k in ops], "ms / image", note=(
                            result["augment_op_conditions"]), rotation=60)
    except Exception as error:  # plotting is optional
        result["plot_error"] = str(error)
    return result


AUGMENTS = (("plain", None), ("autoaugment", "autoaugment"), ("randaugment", "randaugment"))


def kinds_rounds(patterns: dict, batches: int, rounds: int) -> dict:
    """interleaved_rounds of the plain, AutoAugment and RandAugment pipelines on each JPEG kind's
    records ({kind: pattern}), every contender once per round, named "kind/name"."""
    return interleaved_rounds({f"{kind}/{name}": (pattern, augment_name)
                               for kind, pattern in patterns.items()
                               for name, augment_name in AUGMENTS}, batches, rounds)


def summarize_kinds(readings: dict, sizes: dict, cores: int) -> dict:
    """{kind: images/s/core (best of the rounds) of each pipeline, and each augmentation's cost
    against plain: best of each, the median of the rounds' paired costs, and the median of the
    rounds' paired CPU costs (CPU ms per image against plain's in the same round - 1)}, from
    `kinds_rounds`' readings."""
    rates, cpu = readings["images_per_sec"], readings["cpu_ms_per_image"]
    summary = {}
    for kind in sizes:
        best = {name: max(rates[f"{kind}/{name}"]) / cores for name, _ in AUGMENTS}
        plain = f"{kind}/plain"
        summary[kind] = {
            "mean_jpeg_kb": sizes[kind],
            "images_per_sec_per_core": {k: round(v, 1) for k, v in best.items()},
            "cpu_ms_per_image_median": {name: round(float(np.median(cpu[f"{kind}/{name}"])), 3)
                                        for name, _ in AUGMENTS},
            "cost": {name: round(1 - best[name] / best["plain"], 3)
                     for name, _ in AUGMENTS[1:]},
            "cost_paired_median": {name: round(paired_cost(rates, f"{kind}/{name}", plain), 3)
                                   for name, _ in AUGMENTS[1:]},
            "cpu_cost_paired_median": {
                name: round(paired_ratio(cpu, f"{kind}/{name}", plain) - 1, 3)
                for name, _ in AUGMENTS[1:]},
        }
    return summary


def compare_jpeg_kinds(num_images: int = 600, batches: int = 100, rounds: int = 5) -> dict:
    """Plain, AutoAugment and RandAugment images/s per core on light and on photo-like
    (ImageNet-encoded) JPEGs, in interleaved rounds in a fresh process set up as training (as
    `run` measures them): does the augmentation cost depend on how heavy the JPEGs are to
    decode?"""
    sizes, patterns = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind in JPEG_KINDS:
            paths = make_images(os.path.join(tmp, kind), num_images, kind=kind)
            sizes[kind] = _mean_kb(paths)
            patterns[kind] = _jpeg_records(paths, _fresh(tmp, f"{kind}_records"))
        readings = kinds_rounds_in_subprocess(patterns, batches, rounds)
    result = summarize_kinds(readings, sizes, _cores())
    result["rounds"], result["batches"] = rounds, batches
    result.update(_per_round(readings))
    return result


def _ops_by_cost(op_costs: dict) -> list[str]:
    """The op names of `measure_op_costs`' table, costliest first."""
    return sorted((k for k in op_costs if k != "loop"), key=op_costs.get, reverse=True)


def _op_summary(op_costs: dict, expected: dict) -> str:
    top = sorted(expected["autoaugment_share"].items(), key=lambda item: -item[1])[:2]
    ops = _ops_by_cost(op_costs)[:4]
    return ("augmentation ops, ms of CPU per image (one thread): "
            + ", ".join(f"{k} {op_costs[k]:.3f}" for k in ops)
            + f"; loop {op_costs['loop']:.3f}; on average AutoAugment "
            f"{expected['autoaugment']:.3f} ("
            + ", ".join(f"{k} {v:.0%}" for k, v in top)
            + f"), RandAugment {expected['randaugment']:.3f}")


def _per_round(readings: dict) -> dict:
    """`interleaved_rounds`' readings, rounded, as the result files keep them."""
    return {"images_per_sec_per_round": {k: [round(rate, 1) for rate in v]
                                         for k, v in readings["images_per_sec"].items()},
            "cpu_ms_per_image_per_round": {k: [round(ms, 3) for ms in v]
                                           for k, v in readings["cpu_ms_per_image"].items()}}


def _mean_kb(paths: list[str]) -> float:
    return round(float(np.mean([os.path.getsize(p) for p in paths])) / 1e3, 1)


def _fresh(parent: str, name: str) -> str:
    path = os.path.join(parent, name)
    os.makedirs(path)
    return path


if __name__ == "__main__":
    import argparse
    import json

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer images and batches")
    parser.add_argument("--op_costs", action="store_true",
                        help="only the per-op augmentation costs, on one thread, as one JSON line")
    parser.add_argument("--rounds", type=int, default=5, help="--op_costs: interleaved rounds")
    parser.add_argument("--calls", type=int, default=20, help="--op_costs: calls per round")
    parser.add_argument("--compare_jpegs", action="store_true",
                        help="only plain, AutoAugment and RandAugment on light and on photo-like "
                             "JPEGs, in a process set up as training")
    parser.add_argument("--program_threads", action="store_true",
                        help="only the batch programs' CPU and wall ms per image as training "
                             "runs them, with XLA on the default intra-op pool, and with one "
                             "intra-op thread (three processes)")
    parser.add_argument("--program_threads_child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--pipeline_threads", action="store_true",
                        help="only plain vs AutoAugment pipelines in 4 processes per thread "
                             "setting of --program_threads, the settings alternating")
    parser.add_argument("--pipeline_threads_child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--compare_jpegs_child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--records", help=argparse.SUPPRESS)
    parser.add_argument("--batches", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--intra_op_threads", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--xla_on_intra_op_pool", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.compare_jpegs:
        print(json.dumps(compare_jpeg_kinds(), indent=2))
    elif args.program_threads:
        print(json.dumps(batch_programs_by_threads(), indent=2))
    elif args.pipeline_threads:
        print(json.dumps(pipelines_by_threads(), indent=2))
    elif args.program_threads_child or args.pipeline_threads_child or args.compare_jpegs_child:
        # isort: off
        import efficientnet  # noqa: F401  (first: its TensorFlow settings, as in the pipeline)
        import tensorflow as tf
        from efficientnet.data import cpu_xla
        # isort: on

        if args.intra_op_threads:
            tf.config.threading.set_intra_op_parallelism_threads(args.intra_op_threads)
        if not args.xla_on_intra_op_pool and not cpu_xla.single_thread_cpu_xla():
            raise SystemExit("TensorFlow started before cpu_xla.single_thread_cpu_xla")
        if args.compare_jpegs_child:
            print(json.dumps(kinds_rounds(json.loads(args.records), args.batches, args.rounds)))
        else:
            print(json.dumps(measure_batch_programs() if args.program_threads_child
                             else pipeline_rates()))
    elif args.op_costs:
        # isort: off
        import efficientnet  # noqa: F401  (first: its TensorFlow settings, as in the pipeline)
        import tensorflow as tf
        from efficientnet.data import augment
        # isort: on

        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        print(json.dumps(measure_op_costs(augment.OP_NAMES, args.rounds, args.calls)))
    else:
        print(json.dumps(run(quick=args.quick, plot=False), indent=2))
