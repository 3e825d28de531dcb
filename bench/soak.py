"""A soak: the real pipeline fed at a steady rate for an hour, watched every minute.

    .venv/bin/python bench/soak.py --private ~/.r2-stack --port-offset 200 \
        --rate 0.5 --minutes 60 --csv docs/soak/soak-60min.csv
    .venv/bin/python bench/soak.py --report docs/soak/soak-60min.csv --plot docs/soak.png

It starts ``mimamori run`` (Prism, the Python workers in that process) as a subprocess, as an
operator would, and publishes distinct photos to ``media.scraped`` at ``--rate`` per second:
the five large portraits and the LFW photos of ``../shared/testdata``, each cropped by an
amount that grows with every pass, so every message is new media (the later passes are
near-duplicates of the first and end as sightings, as re-uploads do). Every ``--sample-s``
it records one CSV row:

* consumer lag of the live group on ``media.scraped`` (end offsets minus committed offsets);
* end-to-end delay of the items that finished in that minute: publish time (= ``scraped_at``)
  to the first poll (every 5 s) that finds the item's sighting in Milvus, so at most 5 s high;
* resident memory, open file descriptors and threads of the worker (the ``mimamori run``
  process), Prism (its child), Kafka, MinIO and Milvus (their pidfiles' processes, with
  their children: Milvus runs behind a network-namespace bridge); and, beside the CSV in
  ``<csv>.worker.jsonl``, what the worker's descriptors point at and its threads by name.

``--private HOME --port-offset N`` runs all of it on a stack of its own (started here, stopped
at the end): a soak measures services, so it never shares them. ``--report`` prints the
Markdown table and, per process, the growth over the last 40 minutes (the median of the last
five samples against the median of the five at the start of that window).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from PIL import Image  # noqa: E402

from mimamori.core.config import load_settings  # noqa: E402
from tests.support import edits  # noqa: E402
from tests.support.own_stack import private_settings  # noqa: E402
from tests.support.stack_cli import CLI, child_environment, mimamori, site_environment  # noqa: E402

TESTDATA = ROOT.parent / "shared" / "testdata"
COMPONENTS = ("worker", "prism", "kafka", "minio", "milvus")
POLL_S = 5.0


def photo_paths() -> list[Path]:
    """The five large portraits first, then LFW: every size the feed has is seen in its first minute.

    A worker's memory steps the first time it meets a larger image (the detector's pyramid, its
    per-shape caches, glibc's arenas); with the portraits last, the first pass reached them at
    minute 53, inside the window the soak is judged on (the second soak's step).
    """
    return sorted((TESTDATA / "faces").glob("*.jpg")) + sorted((TESTDATA / "lfw").glob("*/*.jpg"))


def distinct_images() -> Iterator[tuple[int, bytes]]:
    """(number, JPEG) without end: pass p crops each photo by 1% + 3% * p, so no two are the same bytes."""
    paths = photo_paths()
    number = 0
    for rounds in range(10_000):
        for path in paths:
            photo = Image.open(path).convert("RGB")
            buffer = io.BytesIO()
            edits.crop(photo, min(0.3, 0.01 + 0.03 * rounds)).save(buffer, "JPEG", quality=90)
            yield number, buffer.getvalue()
            number += 1


class Tracker:
    """What was published when, and what Milvus shows as done (a sighting per media item)."""

    def __init__(self, settings):
        from mimamori.stores.media import ensure_media_collections

        _media, self.sightings = ensure_media_collections(settings)
        self.lock = threading.Lock()
        self.pending: dict[str, float] = {}
        self.published = 0
        self.done: list[tuple[float, float]] = []  # (finished at, delay s)

    def publish(self, media_id: str) -> None:
        with self.lock:
            self.pending[media_id] = time.time()
            self.published += 1

    def poll(self) -> None:
        with self.lock:
            ids = list(self.pending)
        for start in range(0, len(ids), 200):
            chunk = ids[start:start + 200]
            rows = self.sightings.query(f"media_id in {json.dumps(chunk)}", output_fields=["media_id"],
                                        consistency_level="Bounded")
            now = time.time()
            with self.lock:
                for row in rows:
                    began = self.pending.pop(row["media_id"], None)
                    if began is not None:
                        self.done.append((now, now - began))

    def finished_since(self, since: float) -> list[float]:
        with self.lock:
            return [delay for at, delay in self.done if at >= since]


def feed(settings, tracker: Tracker, rate: float, stop: threading.Event, prefix: str, count: int | None = None) -> None:
    """Publish distinct photos at ``rate`` per second (or ``count`` of them as fast as that rate allows)."""
    from mimamori.stores.objects import object_client
    from mimamori.streams.events import MediaEvent, now_utc
    from mimamori.streams.ingest import publish, store_bytes
    from mimamori.streams.producer import shared_producer

    client, producer = object_client(settings), shared_producer(settings.kafka)
    next_at = time.monotonic()
    for number, data in distinct_images():
        if stop.is_set() or (count is not None and number >= count):
            break
        key, sha = store_bytes(client, settings.minio.buckets.media.name, data, "image/jpeg")
        media_id = f"{prefix}:{number}"
        event = MediaEvent(media_id=media_id, source_url=f"https://soak.example/{prefix}/{number}.jpg",
                           platform="soak", scraped_at=now_utc(), content_type="image/jpeg", object_key=key,
                           sha256=sha, size_bytes=len(data))
        tracker.publish(media_id)
        publish(producer, settings, event)
        producer.flush()
        next_at += 1.0 / rate
        stop.wait(max(0.0, next_at - time.monotonic()))


def consumer_lag(settings) -> int:
    from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

    options = settings.kafka.client_options()
    topic = settings.kafka.topics.media_scraped.name
    consumer = KafkaConsumer(**options, enable_auto_commit=False)
    admin = KafkaAdminClient(**options)
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        ends = consumer.end_offsets(tps)
        group = settings.kafka.consumer_group
        committed = admin.list_group_offsets([group]).get(group, {})
        return sum(ends[tp] - (committed[tp].offset if tp in committed and committed[tp].offset >= 0 else 0)
                   for tp in tps)
    finally:
        consumer.close()
        admin.close()


def tree(pid: int) -> list[psutil.Process]:
    process = psutil.Process(pid)
    return [process, *process.children(recursive=True)]


def usage(processes: list[psutil.Process]) -> dict[str, float]:
    """Resident MiB, open descriptors and threads, summed over ``processes`` (gone ones count 0)."""
    rss = fds = threads = 0
    for process in processes:
        try:
            with process.oneshot():
                rss += process.memory_info().rss
                fds += process.num_fds()
                threads += process.num_threads()
        except psutil.Error:
            continue
    return {"rss_mib": round(rss / 2**20, 1), "fds": fds, "threads": threads}


def descriptors_and_threads(processes: list[psutil.Process]) -> dict[str, dict[str, int]]:
    """What a process tree's descriptors point at (socket, pipe, anon_inode:..., or the file's
    folder) and its threads by name: to tell, when a count steps, what the new ones are."""
    kinds: dict[str, int] = {}
    names: dict[str, int] = {}
    for process in processes:
        base = Path("/proc") / str(process.pid)
        try:
            for fd in (base / "fd").iterdir():
                target = os.readlink(fd)
                special = ":" in target and not target.startswith("/")  # socket:[123], pipe:[4], anon_inode:...
                kind = target.split(":")[0] if special else str(Path(target).parent)
                kinds[kind] = kinds.get(kind, 0) + 1
            for task in (base / "task").iterdir():
                name = (task / "comm").read_text().strip()
                names[name] = names.get(name, 0) + 1
        except OSError:  # the process or one of its descriptors went while it was read
            continue
    return {"descriptors": dict(sorted(kinds.items())), "threads": dict(sorted(names.items()))}


def component_processes(stack_home: Path, runner: subprocess.Popen) -> dict[str, list[psutil.Process]]:
    found: dict[str, list[psutil.Process]] = {}
    run = tree(runner.pid)
    found["prism"] = [p for p in run[1:] if p.name() == "prism"]
    prism_pids = {q.pid for p in found["prism"] for q in tree(p.pid)}
    found["prism"] = [psutil.Process(pid) for pid in prism_pids]
    found["worker"] = [p for p in run if p.pid not in prism_pids]
    for name in ("kafka", "minio", "milvus", "milvus-bridge"):
        pidfile = stack_home / "run" / f"{name}.pid"
        if pidfile.exists():
            found.setdefault(name.split("-")[0], []).extend(tree(json.loads(pidfile.read_text())["pid"]))
    return found


def soak(args: argparse.Namespace) -> None:
    settings = load_settings()
    if args.private:
        settings = private_settings(settings, args.private, args.port_offset)
    environment = site_environment(settings)
    if args.private:
        began = time.monotonic()
        mimamori(environment, "stack", "up")
        print(f"soak: private stack up in {time.monotonic() - began:.0f} s ({args.private})", flush=True)
    stack_home = settings.stack.home
    log_path = args.csv.parent / f"{args.csv.stem}.run.log" if args.run_log is None else args.run_log
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log:
        runner = subprocess.Popen([*CLI, "run"], env=child_environment(environment), cwd=ROOT, stdout=log,
                                  stderr=subprocess.STDOUT)
    tracker = Tracker(settings)
    stop = threading.Event()

    def poller() -> None:
        while not stop.wait(POLL_S):
            try:
                tracker.poll()
            except Exception as error:  # a slow Milvus must not end the soak: the next poll tries again
                print(f"soak: poll failed: {error}", flush=True)

    threading.Thread(target=poller, daemon=True).start()
    try:
        # Warm up: the runner started and the models loaded, before the clock starts.
        run_tag = time.strftime("%Y%m%dT%H%M%S")  # media ids of this run only (a stack may hold an earlier one's)
        feed(settings, tracker, rate=1.0, stop=stop, prefix=f"warmup-{run_tag}", count=3)
        deadline = time.monotonic() + 900
        while tracker.pending and time.monotonic() < deadline:
            if runner.poll() is not None:
                raise SystemExit(f"mimamori run exited {runner.returncode} during warm-up (see {log_path})")
            time.sleep(2)
        print(f"soak: pipeline warm; feeding {args.rate}/s for {args.minutes} min", flush=True)
        feeder = threading.Thread(target=feed, args=(settings, tracker, args.rate, stop, f"soak-{run_tag}"),
                                  daemon=True)
        start = time.time()
        feeder.start()
        args.csv.parent.mkdir(parents=True, exist_ok=True)
        details_path = args.csv.parent / f"{args.csv.stem}.worker.jsonl"
        with open(args.csv, "w", newline="") as handle, open(details_path, "w") as details:
            writer = None
            for minute in range(1, args.minutes + 1):
                time.sleep(max(0.0, start + minute * args.sample_s - time.time()))
                if runner.poll() is not None:
                    raise SystemExit(f"mimamori run exited {runner.returncode} at minute {minute} (see {log_path})")
                delays = sorted(tracker.finished_since(time.time() - args.sample_s))
                row: dict[str, float | int | str] = {
                    "minute": minute, "published": tracker.published, "finished": len(tracker.done),
                    "pending": len(tracker.pending), "lag": consumer_lag(settings),
                    "e2e_n": len(delays),
                    "e2e_p50_s": round(statistics.median(delays), 1) if delays else "",
                    "e2e_max_s": round(delays[-1], 1) if delays else ""}
                components = component_processes(stack_home, runner)
                for name, processes in components.items():
                    for key, value in usage(processes).items():
                        row[f"{name}_{key}"] = value
                if writer is None:
                    writer = csv.DictWriter(handle, fieldnames=list(row))
                    writer.writeheader()
                writer.writerow(row)
                handle.flush()
                details.write(json.dumps({"minute": minute, **descriptors_and_threads(components["worker"])}) + "\n")
                details.flush()
                print(json.dumps(row), flush=True)
    finally:
        stop.set()
        runner.send_signal(signal.SIGINT)
        try:
            runner.wait(60)
        except subprocess.TimeoutExpired:
            runner.kill()
        if args.private and not args.keep_stack:
            mimamori(environment, "stack", "down", check=False)


# --- the report ----------------------------------------------------------------------------------

def read_rows(path: Path) -> list[dict[str, float]]:
    with open(path) as handle:
        return [{k: float(v) if v != "" else float("nan") for k, v in row.items()} for row in csv.DictReader(handle)]


def growth(rows: list[dict[str, float]], column: str, window: int = 40) -> tuple[float, float, float]:
    """(value at the window's start, at the end, change): medians of five samples at each end."""
    values = [row[column] for row in rows]
    begin = statistics.median(values[-window:][:5])
    end = statistics.median(values[-5:])
    return begin, end, (end - begin) / begin if begin else 0.0


def report(args: argparse.Namespace) -> None:
    rows = read_rows(args.report)
    window = min(40, len(rows) - 5)
    print(f"| process | measure | minute {int(rows[-window]['minute'])} | minute {int(rows[-1]['minute'])} "
          f"| change over the last {window} min |")
    print("| --- | --- | --- | --- | --- |")
    worst = 0.0
    for name in COMPONENTS:
        for measure, label in (("rss_mib", "RSS MiB"), ("fds", "open fds"), ("threads", "threads")):
            column = f"{name}_{measure}"
            if column not in rows[0]:
                continue
            begin, end, change = growth(rows, column, window)
            worst = max(worst, change)
            print(f"| {name} | {label} | {begin:g} | {end:g} | {change:+.1%} |")
    lags = [row["lag"] for row in rows]
    delays = [row["e2e_max_s"] for row in rows if row["e2e_max_s"] == row["e2e_max_s"]]
    print(f"\nlargest growth {worst:+.1%}; consumer lag max {max(lags):g} (last 40 min: "
          f"{max(lags[-window:]):g}); end-to-end delay p50 {statistics.median(r['e2e_p50_s'] for r in rows):.1f} s, "
          f"max {max(delays):.1f} s; {int(rows[-1]['published'])} published, {int(rows[-1]['finished'])} finished\n")
    print("| minute | published | lag | e2e p50 s | e2e max s | " +
          " | ".join(f"{n} RSS MiB / fds / threads" for n in COMPONENTS) + " |")
    print("| --- " * (5 + len(COMPONENTS)) + "|")
    for row in rows:
        if int(row["minute"]) % 5 and row is not rows[0]:
            continue
        cells = [f"{int(row['minute'])}", f"{int(row['published'])}", f"{int(row['lag'])}",
                 f"{row['e2e_p50_s']:.1f}", f"{row['e2e_max_s']:.1f}"]
        cells += [f"{row[f'{n}_rss_mib']:.0f} / {int(row[f'{n}_fds'])} / {int(row[f'{n}_threads'])}"
                  for n in COMPONENTS if f"{n}_rss_mib" in row]
        print("| " + " | ".join(cells) + " |")
    if args.plot:
        plot(rows, args.plot)


def plot(rows: list[dict[str, float]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    minutes = [row["minute"] for row in rows]
    figure, axes = plt.subplots(2, 2, figsize=(11, 7), sharex=True)
    for name in COMPONENTS:
        if f"{name}_rss_mib" not in rows[0]:
            continue
        for axis, measure in zip(axes.flat[:3], ("rss_mib", "fds", "threads"), strict=True):
            axis.plot(minutes, [row[f"{name}_{measure}"] for row in rows], label=name)
    for axis, title in zip(axes.flat[:3], ("resident memory (MiB)", "open file descriptors", "threads"), strict=True):
        axis.set_title(title)
        axis.set_yscale("log")
        axis.axvline(minutes[-1] - 40, color="grey", linestyle=":")
    axes.flat[0].legend(fontsize=8)
    lag_axis = axes.flat[3]
    lag_axis.plot(minutes, [row["lag"] for row in rows], label="consumer lag (messages)", color="black")
    lag_axis.plot(minutes, [row["e2e_max_s"] for row in rows], label="end-to-end delay, max (s)", color="red")
    lag_axis.plot(minutes, [row["e2e_p50_s"] for row in rows], label="end-to-end delay, median (s)", color="orange")
    lag_axis.set_title("lag and end-to-end delay")
    lag_axis.legend(fontsize=8)
    for axis in axes[1]:
        axis.set_xlabel("minute")
    figure.tight_layout()
    figure.savefig(out, dpi=80)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--private", type=Path, metavar="HOME", help="run on a private stack in HOME (started here)")
    parser.add_argument("--port-offset", type=int, default=200, help="the private stack's ports: defaults + this")
    parser.add_argument("--keep-stack", action="store_true", help="leave the private stack running afterwards")
    parser.add_argument("--rate", type=float, default=0.5, help="photos published per second")
    parser.add_argument("--minutes", type=int, default=60)
    parser.add_argument("--sample-s", type=float, default=60.0, help="seconds between samples (a 'minute')")
    parser.add_argument("--csv", type=Path, default=Path.home() / ".cache" / "mimamori" / "bench" / "soak.csv")
    parser.add_argument("--run-log", type=Path, help="where mimamori run's output goes (default: beside --csv)")
    parser.add_argument("--report", type=Path, metavar="CSV", help="print the tables of an earlier soak's CSV")
    parser.add_argument("--plot", type=Path, metavar="PNG", help="with --report: also draw the plot")
    args = parser.parse_args()
    report(args) if args.report else soak(args)


if __name__ == "__main__":
    main()
