"""The Faust detector agent end to end, one worker process, on the embedded tansu broker.

For each stream ("unchanged": every product's price repeats; "changed": every observation
after the first sweep changes the price) the harness pre-produces N observations to
``price-observations``, then starts ONE worker process and polls its Prometheus counter
``pricewatch_stream_observations_total`` (summed over outcomes). The rate is measured from
the first poll that sees the counter move to the moment it reaches N (interpolated between
the last two polls), so the worker's start-up, group join and table set-up are excluded.

Candidate: the real worker, ``python -m launcher.cli worker`` (detector, matcher and
scheduler agents, as deployed). Baseline: ``python -m bench.naive_worker``, the same app
configuration with a single agent that decodes the JSON and writes the table once per event.

Every worker run gets its own topic prefix, consumer group (app id) and data dir, so
nothing a run wrote is seen by the next one.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from launcher.embedded.broker import EmbeddedBroker
from launcher.processes import Process, free_port, pricewatch_command
from launcher.stack import Stack
from pricewatch.contract.topics import PRICE_OBSERVATIONS
from pricewatch.kafka import create_topics, make_producer, wait_for_broker
from pricewatch.settings import Settings

from . import workload
from .report import RESULTS_DIR, BenchResult, Figure, Row

NAME = "detector_agent"
AIMS = {"unchanged": 25_000.0, "changed": 10_000.0}
STREAMS = ("unchanged", "changed")
OBSERVATIONS_METRIC = "pricewatch_stream_observations_total"
EXTRA_METRICS = (
    "pricewatch_stream_state_writes_total",
    "pricewatch_stream_events_total",
    "pricewatch_dead_letters_total",
)
CLK_TCK = os.sysconf("SC_CLK_TCK")

# What each variant runs: the real worker, or the naive baseline.
COMMANDS: dict[str, list[str]] = {
    "agent": pricewatch_command("worker", "--worker-id", "bench"),
    "naive": [sys.executable, "-m", "bench.naive_worker", "--worker-id", "naive"],
    # Faust's ceiling: the same app with an agent that only counts (per event, or batched).
    "faust-noop": [sys.executable, "-m", "bench.naive_worker", "--mode", "noop"],
    "faust-take": [sys.executable, "-m", "bench.naive_worker", "--mode", "take"],
}


def metrics_text(url: str) -> str | None:
    """A /metrics exposition; None while the endpoint does not answer."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return str(response.read().decode())
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


def scrape(url: str, names: tuple[str, ...]) -> dict[str, float] | None:
    """Each metric's value summed over its labels; None while the endpoint does not answer."""
    text = metrics_text(url)
    if text is None:
        return None
    totals = dict.fromkeys(names, 0.0)
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in totals:
            totals[name] += float(line.rsplit(" ", 1)[1])
    return totals


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process (Linux /proc), None when it cannot be read."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


@dataclass
class WorkerRun:
    stream: str
    variant: str
    observations: int
    rate: float = 0.0  # observations/s from first movement to N
    startup_seconds: float = 0.0  # spawn to first movement
    processing_seconds: float = 0.0  # first movement to N
    completed: bool = False
    worker_cpu_percent: float | None = None  # over the processing window; 100 = one core
    broker_cpu_percent: float | None = None
    final_metrics: dict[str, float] = field(default_factory=dict)
    samples: list[tuple[float, float]] = field(default_factory=list)  # (s since spawn, count)
    profile: dict[str, Any] | None = None
    log_path: str = ""

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "samples"} | {
            "samples": [(round(t, 3), c) for t, c in self.samples]
        }


def _interpolate_done(samples: list[tuple[float, float]], target: float) -> float:
    """The time the count reached ``target``, between the last two polls."""
    (t0, c0), (t1, c1) = samples[-2], samples[-1]
    if c1 <= c0:
        return t1
    return t0 + (t1 - t0) * (min(target, c1) - c0) / (c1 - c0)


class Profiler:
    """``py-spy record`` attached to a worker while it processes (raw collapsed stacks)."""

    def __init__(self, pid: int, output: Path, rate: int = 100) -> None:
        exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        self.output = output
        # --gil: only samples holding the GIL, i.e. where the worker's one core goes.
        command = [exe, "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw"]
        command += ["--gil", "--nonblocking", "--output", str(output)]
        self.process = Process("py-spy", command).start()

    def stop(self) -> dict[str, Any]:
        self.process.stop(30, signal.SIGINT)  # SIGINT: py-spy writes what it sampled
        return summarize_profile(self.output)


def py_spy_available() -> bool:
    return bool(shutil.which("py-spy") or (Path(sys.executable).parent / "py-spy").exists())


def _frame_name(frame: str) -> str:
    # py-spy raw frames look like "detector (streams/agents/detector.py:37)"
    return frame.rsplit(":", 1)[0] + ")" if frame.endswith(")") and ":" in frame else frame


def summarize_profile(path: Path, top: int = 15) -> dict[str, Any]:
    """Self and inclusive shares of samples per function, from collapsed stacks."""
    self_counts: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    if not path.exists():
        return {"error": f"py-spy wrote no {path.name}"}
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame_name(f) for f in stack.split(";")]
        # Skip idle samples of the thread that serves /metrics and of the event loop.
        if frames[-1].startswith(("select (", "_run_once (", "poll (", "wait (")):
            continue
        total += count
        self_counts[frames[-1]] += count
        for name in set(frames):
            inclusive[name] += count
    if not total:
        return {"error": "no samples"}
    return {
        "file": str(path),
        "busy_samples": total,
        "self_top": [(name, round(100 * n / total, 1)) for name, n in self_counts.most_common(top)],
        "inclusive_top": [
            (name, round(100 * n / total, 1)) for name, n in inclusive.most_common(top * 3)
        ],
    }


def run_worker(
    settings: Settings,
    variant: str,
    stream: str,
    target: int,
    logs_dir: Path,
    broker_pid: int | None,
    poll_interval: float,
    timeout: float,
    profile_path: Path | None,
    log: Callable[[str], None],
) -> WorkerRun:
    port = free_port()
    metrics_url = f"http://{settings.metrics_host}:{port}/metrics"
    log_path = logs_dir / f"{stream}-{variant}.log"
    result = WorkerRun(stream, variant, target, log_path=str(log_path))
    process = Process(
        f"{stream}-{variant}",
        [*COMMANDS[variant], "--metrics-port", str(port)],
        log_path,
        env=Stack(settings=settings).child_env(),
        cwd=Path(__file__).resolve().parent.parent,
    ).start()
    profiler: Profiler | None = None
    spawned = time.perf_counter()
    first: tuple[float, float] | None = None
    cpu_first: tuple[float | None, float | None] = (None, None)
    names = (OBSERVATIONS_METRIC, *EXTRA_METRICS)
    try:
        while True:
            if not process.running:
                code = process.returncode
                raise RuntimeError(f"{variant} worker exited ({code}); see {log_path}")
            metrics = scrape(metrics_url, names)
            now = time.perf_counter() - spawned
            if metrics is not None:
                count = metrics[OBSERVATIONS_METRIC]
                result.samples.append((now, count))
                result.final_metrics = metrics
                if first is None and count > 0:
                    first = (now, count)
                    cpu_first = (
                        cpu_seconds(process.pid),
                        None if broker_pid is None else cpu_seconds(broker_pid),
                    )
                    if profile_path is not None:
                        profiler = Profiler(process.pid, profile_path)
                if count >= target:
                    result.completed = True
                    break
            limit = timeout if first is None else first[0] + timeout
            if now > limit:
                log(f"  ! {variant}/{stream}: timed out at {result.samples[-1:]} (target {target})")
                break
            time.sleep(poll_interval)
        if first is not None and first[1] >= target:
            log(f"  ! {variant}/{stream}: all {target} done before the first poll; raise N")
            result.completed = False
        elif first is not None and len(result.samples) >= 2:
            done = _interpolate_done(result.samples, target) if result.completed else now
            last_count = target if result.completed else result.samples[-1][1]
            window = max(done - first[0], 1e-9)
            result.startup_seconds = first[0]
            result.processing_seconds = window
            result.rate = (last_count - first[1]) / window
            wall = now - first[0]
            worker_cpu = cpu_seconds(process.pid)
            if cpu_first[0] is not None and worker_cpu is not None and wall > 0:
                result.worker_cpu_percent = 100 * (worker_cpu - cpu_first[0]) / wall
            broker_cpu = None if broker_pid is None else cpu_seconds(broker_pid)
            if cpu_first[1] is not None and broker_cpu is not None and wall > 0:
                result.broker_cpu_percent = 100 * (broker_cpu - cpu_first[1]) / wall
    finally:
        if profiler is not None:
            result.profile = profiler.stop()
        process.stop()
    return result


async def produce(settings: Settings, records: list[tuple[bytes, bytes]]) -> float:
    """Produce every (key, value) to price-observations; returns messages/second."""
    producer = make_producer(settings, linger_ms=50, max_batch_size=512 * 1024)
    await producer.start()
    topic = settings.topic(PRICE_OBSERVATIONS)
    try:
        start = time.perf_counter()
        pending: list[asyncio.Future[Any]] = []
        for key, value in records:
            pending.append(await producer.send(topic, value=value, key=key))
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
        return len(records) / (time.perf_counter() - start)
    finally:
        await producer.stop()


async def prepare(settings: Settings, records: list[tuple[bytes, bytes]]) -> float:
    await wait_for_broker(settings.bootstrap())
    await create_topics(settings)
    return await produce(settings, records)


def run(
    observations: int = 100_000,
    products: int = 10_000,
    streams: tuple[str, ...] = STREAMS,
    repeats: int = 1,
    partitions: int = 4,
    poll_interval: float = 0.2,
    timeout: float | None = None,
    profile: bool = False,
    ceiling: bool = True,
    bootstrap_servers: str | None = None,
    results_dir: Path = RESULTS_DIR,
    log: Callable[[str], None] = print,
) -> BenchResult:
    started = time.perf_counter()
    workdir = results_dir / "work"
    shutil.rmtree(workdir, ignore_errors=True)
    logs_dir = workdir / "logs"
    logs_dir.mkdir(parents=True)
    timeout = timeout or 60.0 + observations / 1000
    if profile and not py_spy_available():
        log(f"[{NAME}] py-spy not found: running without profiles (pip install py-spy)")
        profile = False
    run_id = uuid.uuid4().hex[:6]

    broker: EmbeddedBroker | None = None
    if bootstrap_servers is None:
        broker = EmbeddedBroker(log_path=logs_dir / "broker.log").start()
        bootstrap_servers = broker.bootstrap_servers
    broker_pid = None if broker is None or broker.process is None else broker.process.pid
    runs: list[WorkerRun] = []
    producer_rates: dict[str, list[float]] = {}

    def one_run(
        stream: str, variant: str, repeat: int, records: list[tuple[bytes, bytes]]
    ) -> WorkerRun:
        """A fresh topic prefix, group and data dir; produce; run one worker to N."""
        name = f"bench-{run_id}-{stream}-{variant}-{repeat}"
        settings = Settings(
            kafka_bootstrap_servers=bootstrap_servers,
            kafka_embedded=broker is not None,
            topic_partitions=partitions,
            app_id=name,
            topic_prefix=f"{name}-",
            data_dir=workdir / name,
            log_level="WARNING",
        )
        rate = asyncio.run(prepare(settings, records))
        producer_rates.setdefault(stream, []).append(rate)
        label = f"{stream}/{variant} #{repeat + 1}"
        log(f"  {label}: produced at {rate:,.0f} msg/s; worker...")
        profile_path = results_dir / f"profile-{stream}-{variant}-{repeat}.txt" if profile else None
        worker = run_worker(
            settings,
            variant,
            stream,
            len(records),
            logs_dir,
            broker_pid,
            poll_interval,
            timeout,
            profile_path,
            log,
        )
        runs.append(worker)
        log(
            f"  {label}: {worker.rate:,.0f} obs/s (start-up {worker.startup_seconds:.1f} s, "
            f"processing {worker.processing_seconds:.1f} s, worker CPU "
            f"{_pct(worker.worker_cpu_percent)}, broker CPU {_pct(worker.broker_cpu_percent)})"
            + ("" if worker.completed else " INCOMPLETE")
        )
        dead = worker.final_metrics.get("pricewatch_dead_letters_total", 0.0)
        if dead:
            log(f"  ! {label}: {dead:.0f} dead letters; see {worker.log_path}")
        return worker

    rows: list[Row] = []
    ceiling_rates: dict[str, float | None] = {}
    try:
        first_records: list[tuple[bytes, bytes]] = []
        for stream in streams:
            log(f"[{NAME}] {stream}: building {observations} observations ({products} products)")
            records = [
                (obs.product_id.encode(), obs.model_dump_json().encode())
                for obs in workload.build(stream, products, observations)
            ]
            first_records = first_records or records
            figures: dict[str, list[float]] = {"agent": [], "naive": []}
            details: dict[str, Any] = {}
            for repeat in range(repeats):
                for variant in ("agent", "naive"):
                    worker = one_run(stream, variant, repeat, records)
                    if worker.completed:
                        figures[variant].append(worker.rate)
                    details.setdefault(variant, []).append(
                        {
                            "rate": worker.rate,
                            "completed": worker.completed,
                            "worker_cpu_percent": worker.worker_cpu_percent,
                            "broker_cpu_percent": worker.broker_cpu_percent,
                            "final_metrics": worker.final_metrics,
                        }
                    )
            rows.append(
                Row(
                    case=f"{stream}, 1 worker",
                    candidate=Figure(figures["agent"]),
                    baseline=Figure(figures["naive"]),
                    aim=AIMS.get(stream),
                    notes="profiled (py-spy attached)" if profile else "",
                    details=details,
                )
            )
        if ceiling and first_records:
            log(f"[{NAME}] Faust's ceiling: the same app with an agent that only counts")
            for variant in ("faust-noop", "faust-take"):
                worker = one_run(streams[0], variant, 0, first_records)
                ceiling_rates[variant] = worker.rate if worker.completed else None
    finally:
        if broker is not None:
            broker.stop()
    return BenchResult(
        name=NAME,
        description=__doc__ or "",
        candidate="real worker (launcher.cli worker): detector + matcher + scheduler",
        baseline="bench.naive_worker: json.loads + one table write per event",
        params={
            "observations": observations,
            "products": products,
            "streams": list(streams),
            "repeats": repeats,
            "partitions": partitions,
            "poll_interval": poll_interval,
            "profile": profile,
            "broker": "embedded tansu" if broker is not None else bootstrap_servers,
        },
        rows=rows,
        extra={
            "faust_ceiling_obs_per_second": ceiling_rates,
            "producer_msgs_per_second": producer_rates,
            "runs": [r.to_json() for r in runs],
        },
        elapsed_seconds=time.perf_counter() - started,
    )


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f}%"
