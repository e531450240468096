"""The sharded, parallel, resumable TFRecord writer every converter uses.

Images are shuffled with the seed and split into contiguous shards; worker processes write whole
shards (checking and encoding each image with `process_item`, in shard order, so the output does
not depend on timing or on which worker wrote it), and this process records and commits them.
Each shard goes to a hidden temporary name (`.train-00000-of-00004.incomplete`) and is renamed
when complete; `.tfrecord_tools_state.json` records the finished shards and a fingerprint of the
conversion, so a re-run after a crash or Ctrl-C skips them and writes identical files.
"""

from __future__ import annotations

import collections
import concurrent.futures
import concurrent.futures.process
import contextlib
import dataclasses
import errno
import hashlib
import json
import multiprocessing
import os
import random
import signal
import sys
import time

from PIL import Image

from tfrecord_tools.example import image_example
from tfrecord_tools.images import BadImage, encode_jpeg, prepare_image
from tfrecord_tools.locking import DirectoryBusy, hold_directory
from tfrecord_tools.tfrecord import TFRecordWriter

STATE_FILE = ".tfrecord_tools_state.json"
REPORT_FILE = "conversion_report.json"
LOCK_FILE = ".tfrecord_tools.lock"
LABELS_FILE = "labels.txt"
SPLITS = ("train", "validation")
FORMAT_VERSION = 1


class UsageError(ValueError):
    """A bad argument or input found before anything is written (the CLI exits with code 2)."""


@dataclasses.dataclass(frozen=True)
class Item:
    """One image to convert: a file (`path`) or raw uint8 pixels (`pixels` of `shape` [h, w])."""

    label: int
    filename: str
    path: str | None = None
    pixels: bytes | None = None
    shape: tuple[int, int] | None = None
    synset: str = ""
    text: str = ""
    bboxes: tuple[tuple[float, float, float, float], ...] = ()


def shard_name(split: str, index: int, num_shards: int) -> str:
    return f"{split}-{index:05d}-of-{num_shards:05d}"


def _temporary_shard(output_directory: str, name: str) -> str:
    """Where shard `name` is written until it is committed by a rename."""
    return os.path.join(output_directory, f".{name}.incomplete")


def process_item(item: Item, full_decode: bool = False) -> tuple[bytes | None, str | None, bool]:
    """(serialized record, None, re-encoded?) or (None, reason it was skipped, False)."""
    if item.pixels is not None:
        height, width = item.shape
        image = Image.frombytes("L", (width, height), item.pixels).convert("RGB")
        encoded, reencoded = encode_jpeg(image), False
    else:
        try:
            with open(item.path, "rb") as f:
                data = f.read()
        except OSError as error:
            return None, f"unreadable ({error.strerror or error})", False
        try:
            encoded, height, width, reencoded = prepare_image(data, full_decode)
        except BadImage as error:
            return None, str(error), False
    record = image_example(encoded, height, width, item.label, item.synset, item.text,
                           item.filename, "JPEG", list(item.bboxes) or None)
    return record, None, reencoded


class Progress:
    """A periodic `label: done/total images (pct), images/s, ETA` line on stderr."""

    def __init__(self, label: str, total: int, stream=None, interval: float = 1.0):
        self.label, self.total, self.done = label, total, 0
        self.stream = stream or sys.stderr
        self.interactive = getattr(self.stream, "isatty", lambda: False)()
        self.interval = interval if self.interactive else max(interval, 5.0)
        self.start = self.last = time.perf_counter()

    def update(self, count: int = 1) -> None:
        self.done += count
        now = time.perf_counter()
        if now - self.last >= self.interval:
            self.last = now
            self._print(now, end="\r" if self.interactive else "\n")

    def finish(self) -> float:
        now = time.perf_counter()
        self._print(now, end="\n")
        return now - self.start

    def rate(self) -> float:
        return self.done / max(time.perf_counter() - self.start, 1e-9)

    def _print(self, now: float, end: str) -> None:
        elapsed = max(now - self.start, 1e-9)
        rate = self.done / elapsed
        remaining = (self.total - self.done) / rate if rate > 0 else float("nan")
        eta = _duration(remaining) if remaining == remaining else "?"
        percent = 100.0 * self.done / max(self.total, 1)
        print(f"{self.label}: {self.done:,}/{self.total:,} images ({percent:.1f}%), "
              f"{rate:,.0f} images/s, ETA {eta}   ", end=end, file=self.stream, flush=True)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def assign_shards(items: list[Item], num_shards: int, seed: int, split: str) -> list[list[Item]]:
    """Shuffles (deterministically for the seed) and cuts into `num_shards` contiguous shards."""
    shuffled = list(items)
    random.Random(f"{seed}:{split}").shuffle(shuffled)
    count = len(shuffled)
    return [shuffled[i * count // num_shards:(i + 1) * count // num_shards]
            for i in range(num_shards)]


def _fingerprint(splits: dict[str, list[list[Item]]], class_lines: list[str]) -> str:
    digest = hashlib.sha256(f"v{FORMAT_VERSION}".encode())
    for line in class_lines:
        digest.update(line.encode() + b"\n")
    for split, shards in sorted(splits.items()):
        digest.update(f"{split}:{len(shards)}".encode())
        for shard in shards:
            digest.update(b"|")
            for item in shard:
                digest.update(f"{item.filename}\0{item.path}\0{item.label}\0{item.bboxes}\n"
                              .encode())
                if item.pixels is not None:
                    digest.update(item.pixels)
    return digest.hexdigest()


def _write_text(path: str, text: str) -> None:
    """Writes `path` whole or not at all (a temporary name, then a rename)."""
    temporary = path + ".incomplete"
    with open(temporary, "w") as f:
        f.write(text)
    os.replace(temporary, path)


def _write_json(path: str, payload: dict) -> None:
    _write_text(path, json.dumps(payload, indent=2) + "\n")


def check_output_directory(output_directory: str, expected: dict[str, int]) -> None:
    """UsageError when `output_directory` is unusable or holds shards of another layout."""
    if os.path.exists(output_directory) and not os.path.isdir(output_directory):
        raise UsageError(f"--output_directory {output_directory} exists and is not a directory")
    if not os.path.isdir(output_directory):
        return
    names = {shard_name(split, i, n) for split, n in expected.items() for i in range(n)}
    foreign = sorted(
        name for name in os.listdir(output_directory)
        if name.startswith(tuple(f"{split}-" for split in SPLITS)) and name not in names)
    if foreign:
        raise UsageError(
            f"--output_directory {output_directory} already holds other shards ({foreign[0]}"
            f"{' ...' if len(foreign) > 1 else ''}): use an empty directory, or the same "
            "shard counts to resume")


def write_dataset(output_directory: str, splits: dict[str, list[Item]],
                  num_shards: dict[str, int], class_lines: list[str],
                  num_workers: int | None = None, seed: int = 0,
                  quiet: bool = False, full_decode: bool = False) -> dict:
    """Writes `<split>-NNNNN-of-MMMMM` shards, labels.txt and conversion_report.json.

    Returns the report: {"written": {split: n}, "skipped": [{"path", "reason"}], ...}.
    """
    start = time.perf_counter()
    splits = {split: items for split, items in splits.items() if items}
    for split, items in splits.items():
        shards = num_shards[split]
        if shards < 1:
            raise UsageError(f"--{split}_shards must be at least 1, got {shards}")
        if shards > len(items):
            raise UsageError(f"--{split}_shards={shards} is more than the {len(items)} {split} "
                             "images: use fewer shards")
    counts = {split: num_shards[split] for split in splits}
    if os.path.exists(output_directory) and not os.path.isdir(output_directory):
        raise UsageError(f"--output_directory {output_directory} exists and is not a directory")
    try:
        os.makedirs(output_directory, exist_ok=True)
    except OSError as error:
        raise UsageError(f"--output_directory {output_directory} cannot be created "
                         f"({error.strerror}): choose another path") from None
    try:
        with hold_directory(output_directory, "--output_directory", LOCK_FILE):
            return _write_locked(output_directory, splits, counts, class_lines, num_workers,
                                 seed, quiet, full_decode, start)
    except DirectoryBusy as error:
        raise UsageError(str(error)) from None
    except OSError as error:
        if error.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise
        raise UsageError(f"--output_directory {output_directory} cannot be written "
                         f"({error.strerror}): choose a writable directory") from None


def _write_locked(output_directory, splits, counts, class_lines, num_workers, seed, quiet,
                  full_decode, start) -> dict:
    """write_dataset's work, with the output directory held by this process."""
    check_output_directory(output_directory, counts)
    sharded = {split: assign_shards(items, counts[split], seed, split)
               for split, items in splits.items()}
    fingerprint = _fingerprint(sharded, class_lines)

    state_path = os.path.join(output_directory, STATE_FILE)
    state = _load_state(state_path, output_directory, fingerprint, counts)
    _write_json(state_path, state)
    _write_text(os.path.join(output_directory, LABELS_FILE),
                "".join(f"{line}\n" for line in class_lines))

    todo = []  # (split, shard name, items) still to write
    for split, shards in sharded.items():
        for index, shard in enumerate(shards):
            name = shard_name(split, index, counts[split])
            done = state["shards"].get(name)
            path = os.path.join(output_directory, name)
            if done and os.path.isfile(path) and os.path.getsize(path) == done["bytes"]:
                continue
            todo.append((split, name, shard))
    resumed = sum(len(s) for s in sharded.values()) - len(todo)
    if resumed and not quiet:
        print(f"Resuming: {resumed} complete shards kept, {len(todo)} to write", file=sys.stderr)

    total = sum(len(items) for _, _, items in todo)
    progress = Progress("converting", total, stream=open(os.devnull, "w") if quiet else None)
    _write_shards(output_directory, todo, state, state_path, progress, num_workers, full_decode)
    seconds = progress.finish() if total else 0.0

    report = {"written": {}, "skipped": [], "reencoded": 0, "shards": {}}
    for split in sharded:
        names = [shard_name(split, i, counts[split]) for i in range(counts[split])]
        report["written"][split] = sum(state["shards"][n]["written"] for n in names)
        report["shards"][split] = len(names)
        for name in names:
            report["skipped"] += state["shards"][name]["skipped"]
            report["reencoded"] += state["shards"][name]["reencoded"]
    report["classes"] = len(class_lines)
    report["seed"] = seed
    report["seconds"] = round(time.perf_counter() - start, 3)  # ms: small runs take ~0.1 s
    report["images_per_sec"] = round(total / seconds, 1) if seconds > 0 else None
    _write_json(os.path.join(output_directory, REPORT_FILE), report)
    return report


def _load_state(state_path: str, output_directory: str, fingerprint: str,
                counts: dict[str, int]) -> dict:
    fresh = {"fingerprint": fingerprint, "shards": {}}
    existing = [shard_name(split, i, n) for split, n in counts.items() for i in range(n)
                if os.path.exists(os.path.join(output_directory, shard_name(split, i, n)))]
    if os.path.isfile(state_path):
        try:
            with open(state_path) as f:
                state = json.load(f)
        except (OSError, ValueError):
            state = {}
        if state.get("fingerprint") == fingerprint:
            return state
    if existing:
        raise UsageError(
            f"--output_directory {output_directory} holds shards ({existing[0]} ...) of a "
            "different conversion (other images, seed or shard counts): use an empty directory "
            "or delete them")
    return fresh


def _pool_size(num_workers: int | None, total: int, shards: int) -> int:
    workers = (os.cpu_count() or 1) if num_workers is None else num_workers
    workers = min(workers, shards)
    return 0 if workers <= 1 or total < 64 else workers


def _pool_context():
    """fork while this process has not loaded TensorFlow (the CLI never does), which starts
    workers in milliseconds; spawn otherwise, since forking TensorFlow's threads is unsafe."""
    if "tensorflow" not in sys.modules and "fork" in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


@dataclasses.dataclass(frozen=True)
class _ShardJob:
    output_directory: str
    split: str
    name: str
    items: list[Item]
    full_decode: bool


_WORKER_JOBS: list[_ShardJob] = []  # a worker's copy of every job, set once when it starts


def _start_worker(jobs: list[_ShardJob] | None) -> None:
    """Worker start-up: the jobs arrive once, with the process (copied by fork, or pickled when
    it is spawned), so the parent only ever sends shard indices. Ctrl-C is the parent's to
    handle: it stops the workers."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()
    if jobs is not None:
        _WORKER_JOBS[:] = jobs


def _die_with_parent() -> None:
    """Linux: the kernel kills this worker when the parent dies (kill -9 included), so no
    orphan keeps converting into a directory nobody holds."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    parent = multiprocessing.parent_process()
    if parent is not None and os.getppid() != parent.pid:  # it died before prctl
        os._exit(1)


def _write_job(index: int) -> tuple[str, dict]:
    return _write_shard(_WORKER_JOBS[index])


def _write_shard(job: _ShardJob, on_image=None) -> tuple[str, dict]:
    """Writes one shard to its temporary name (in a worker: no record crosses processes);
    returns (name, its state entry). The caller commits it."""
    temporary = _temporary_shard(job.output_directory, job.name)
    written, skipped, reencoded = 0, [], 0
    with TFRecordWriter(temporary) as writer:
        for item in job.items:
            record, reason, was_reencoded = process_item(item, job.full_decode)
            if record is None:
                skipped.append({"path": item.path or item.filename, "reason": reason,
                                "split": job.split})
            else:
                writer.write(record)
                written += 1
                reencoded += was_reencoded
            if on_image is not None:
                on_image()
    return job.name, {"written": written, "skipped": skipped, "reencoded": reencoded,
                      "bytes": os.path.getsize(temporary)}


def _pooled_results(executor, count: int, in_flight: int):
    """(name, entry) of jobs 0..count-1 in order, with at most `in_flight` submitted at a time
    (a short queue: nothing large or long waits in a pipe when the parent stops)."""
    pending = collections.deque()
    submitted = 0
    while submitted < count or pending:
        while submitted < count and len(pending) < in_flight:
            pending.append(executor.submit(_write_job, submitted))
            submitted += 1
        yield pending.popleft().result()


def _stop_workers(executor) -> None:
    """Shuts the pool down without waiting on anything: queued jobs are cancelled and running
    workers killed (a half-written shard keeps its temporary name; a re-run rewrites it)."""
    processes = list((getattr(executor, "_processes", None) or {}).values())
    manager = getattr(executor, "_executor_manager_thread", None)
    executor.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        with contextlib.suppress(Exception):
            process.kill()
    for process in processes:
        with contextlib.suppress(Exception):
            process.join(timeout=5)
    if manager is not None:
        # Python 3.11's exit hook wakes every pool's manager thread through a pipe that the
        # thread closes when it ends: a pool stopped this way printed "Bad file descriptor" at
        # exit. The workers are dead, so the thread ends now; then the hook forgets it.
        manager.join(timeout=5)
        if not manager.is_alive():
            with contextlib.suppress(Exception):
                concurrent.futures.process._threads_wakeups.pop(manager, None)


def _write_shards(output_directory, todo, state, state_path, progress, num_workers,
                  full_decode) -> None:
    """Each worker process writes whole shards; this process records and commits them."""
    jobs = [_ShardJob(output_directory, split, name, shard, full_decode)
            for split, name, shard in todo]
    sizes = {job.name: len(job.items) for job in jobs}
    workers = _pool_size(num_workers, sum(sizes.values()), len(jobs))
    executor = None
    if workers:
        context = _pool_context()
        if context.get_start_method() == "fork":
            _WORKER_JOBS[:] = jobs  # the forked workers see them without any copy
            initargs = (None,)
        else:
            initargs = (jobs,)
        executor = concurrent.futures.ProcessPoolExecutor(
            workers, mp_context=context, initializer=_start_worker, initargs=initargs)
        results = _pooled_results(executor, len(jobs), 2 * workers)  # commits in shard order
    else:  # one process: the progress line moves per image
        results = (_write_shard(job, progress.update) for job in jobs)
    try:
        for name, entry in results:
            # Record the shard first, then rename: the rename is the commit point, so a kill
            # between the two leaves no final-named shard and a resume simply rewrites it,
            # while a kill after the rename finds the shard already recorded and keeps it.
            state["shards"][name] = entry
            _write_json(state_path, state)
            os.replace(_temporary_shard(output_directory, name),
                       os.path.join(output_directory, name))
            if workers:
                progress.update(sizes[name])
    except concurrent.futures.BrokenExecutor:
        raise RuntimeError(
            "a conversion worker process died (killed, or out of memory): re-run the same "
            "command to resume, with fewer --num_workers if memory is short") from None
    finally:
        if executor is not None:
            _stop_workers(executor)
            _WORKER_JOBS.clear()
