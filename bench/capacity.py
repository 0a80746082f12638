"""Capacity at equal freshness: Pricewatch against changedetection.io (and bench's polling
baseline) on the same local shop.

For each N of a ladder and each system, alone on the machine (the others stopped):

1. a fresh shop (``bench.capacity_shop``, its own process) serves N product pages of
   ~100 KB with schema.org price and availability;
2. the system starts and is told to check every product every ``interval`` seconds, with
   one alert per price change:
   - **changedetection.io** (``bench.capacity_peer``): its own virtualenv, N watches through
     its REST API, restock/price processor, plain-HTTP fetcher, alerts through Apprise
     ``json://`` to the harness's HTTP receiver;
   - **Pricewatch**: worker, scraper, PostgreSQL sink and email sink, one process each, on
     the embedded broker and PostgreSQL; N verified ``notify_any_drop`` subscriptions;
     ``default_check_interval_seconds`` = interval (its ±10 % jitter); per-host politeness
     opened up (every product is on one host, the peer has none); alerts by SMTP to the
     harness's aiosmtpd receiver;
   - **polling baseline** (``bench.polling_baseline``): one process, a job every interval,
     alerts as ``.eml`` files (the file's mtime is the alert time);
3. once every product was fetched once (the first sweep; not done within
   ``60 + 2 x interval`` s means the system cannot check N products per interval, and the
   run stops there), the shop drops the price of ``max(fraction x N, min(100, N))`` random
   products, each once, at random moments of a window of ``2 x interval``;
4. the harness collects alerts until every drop is alerted or ``interval + 10 s + grace``
   after the window closed (then 5 s more, to see duplicates).

Figures per run: time to alert (alert received - the moment the shop changed the price)
p50/p95/max; missed, duplicate and spurious alerts; checks/s (product pages the shop
served during the window) against the N / interval needed; CPU per check (CPU seconds of
every process of the system over the window, the shop and the harness excluded, divided
by the checks); the peak RSS of the system's processes; the load average before and after.
**Held** = every drop alerted and time-to-alert p95 <= interval + 10 s.
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import json
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from launcher.processes import Process, free_port, wait_for_port

from . import capacity_peer, capacity_shop
from .pipeline import (
    ROOT,
    Services,
    bench_subscription,
    database_backend_pids,
    latency_summary,
    percentile,
    produce_subscriptions,
    roles,
    spawn,
    spawn_worker,
    wait_tracked,
)
from .report import RESULTS_DIR, BenchResult, Figure, Row

NAME = "capacity"
SYSTEMS = ("changedetection", "pricewatch", "polling")
LABELS = {
    "changedetection": f"changedetection.io {capacity_peer.VERSION}",
    "pricewatch": "Pricewatch",
    "polling": "polling baseline",
}
SLACK_SECONDS = 10.0  # held: time-to-alert p95 <= interval + this
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


# --- Pure parts (unit-tested) ---------------------------------------------------------


@dataclass(frozen=True)
class Alert:
    n: int  # product number
    at: float  # epoch seconds the alert was received (or written)


@dataclass
class Outcome:
    """Alerts matched to the price changes they answer."""

    changes: int
    alerted: int
    missed: int
    duplicates: int  # more alerts after a product's change than its one
    spurious: int  # alerts for a product before its change, or for one that did not change
    seconds: list[float] = field(default_factory=list)  # time to alert, per alerted change

    @property
    def exact(self) -> bool:
        return self.missed == 0 and self.duplicates == 0 and self.spurious == 0

    def summary(self) -> dict[str, Any]:
        data = {k: v for k, v in asdict(self).items() if k != "seconds"}
        data["exact"] = self.exact
        data["time_to_alert"] = latency_summary(self.seconds, self.changes)
        return data


def match_alerts(changes: Sequence[tuple[int, float]], alerts: Sequence[Alert]) -> Outcome:
    """Each change (product, changed at) gets the first alert for its product at or after
    the change; the others are duplicates (after it) or spurious (before it, or for a
    product that did not change). Each product changes at most once per run."""
    changed_at = dict(changes)
    by_product: dict[int, list[float]] = {}
    for alert in alerts:
        by_product.setdefault(alert.n, []).append(alert.at)
    seconds: list[float] = []
    duplicates = spurious = 0
    for n, times in by_product.items():
        if n not in changed_at:
            spurious += len(times)
            continue
        after = sorted(t for t in times if t >= changed_at[n])
        spurious += len(times) - len(after)
        if after:
            seconds.append(after[0] - changed_at[n])
            duplicates += len(after) - 1
    return Outcome(
        changes=len(changed_at),
        alerted=len(seconds),
        missed=len(changed_at) - len(seconds),
        duplicates=duplicates,
        spurious=spurious,
        seconds=seconds,
    )


def held(outcome: Outcome, interval: float, slack: float = SLACK_SECONDS) -> bool:
    """Every change alerted, and the time to alert p95 at most ``interval + slack``."""
    p95 = percentile(outcome.seconds, 95)
    return (
        outcome.changes > 0
        and outcome.missed == 0
        and p95 is not None
        and p95 <= (interval + slack)
    )


def largest_held(verdicts: dict[int, bool]) -> int | None:
    """The largest N held such that every smaller N tried was held too (a system that
    fails at 300 and passes at 1,000 by luck does not hold 1,000)."""
    best = None
    for n in sorted(verdicts):
        if not verdicts[n]:
            break
        best = n
    return best


def parse_ladder(text: str) -> list[int]:
    """``"100,1k,3000"`` -> [100, 1000, 3000] (sorted, unique, positive)."""
    out = set()
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        scale = 1000 if part.lower().endswith("k") else 1
        value = int(float(part.rstrip("kK")) * scale)
        if value <= 0:
            raise ValueError(f"not a positive product count: {part!r}")
        out.add(value)
    if not out:
        raise ValueError("no product counts")
    return sorted(out)


# --- Processes: CPU and memory from /proc ----------------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def descendants(pid: int) -> list[int]:
    """``pid`` and every live process under it."""
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            with contextlib.suppress(OSError, ValueError):
                todo.extend(int(c) for c in task.read_text().split())
    return out


def tree_cpu_seconds(pid: int) -> float:
    """CPU time of a process and its descendants, children that already exited included
    (changedetection.io may parse a page in a short-lived subprocess)."""
    total = 0.0
    for member in descendants(pid):
        fields = _stat_fields(member)
        if fields is not None:
            total += sum(int(fields[i]) for i in (11, 12, 13, 14)) / CLK_TCK
    return total


def tree_rss_bytes(pid: int) -> int:
    total = 0
    for member in descendants(pid):
        with contextlib.suppress(OSError, IndexError, ValueError):
            total += int(Path(f"/proc/{member}/statm").read_text().split()[1]) * PAGE_SIZE
    return total


@dataclass
class SystemMeter:
    """CPU of a system's process trees plus its database's backends over a window, and
    the peak RSS of the trees (PostgreSQL's shared server is left out of memory)."""

    pids: dict[str, int]
    database_url: str | None = None
    peak_rss: int = 0
    _start: dict[str, float] = field(default_factory=dict)
    _started_at: float = 0.0

    def _read(self) -> dict[str, float]:
        out = {name: tree_cpu_seconds(pid) for name, pid in self.pids.items()}
        if self.database_url:
            for pid in database_backend_pids(self.database_url):
                out[f"postgres-backend-{pid}"] = tree_cpu_seconds(pid)
        return out

    def sample_rss(self) -> int:
        rss = sum(tree_rss_bytes(pid) for pid in self.pids.values())
        self.peak_rss = max(self.peak_rss, rss)
        return rss

    def start(self) -> None:
        self._start = self._read()
        self._started_at = time.monotonic()
        self.sample_rss()

    def stop(self) -> dict[str, Any]:
        end = self._read()
        used = {k: v - self._start.get(k, 0.0) for k, v in end.items()}
        backends = sum(v for k, v in used.items() if k.startswith("postgres-backend-"))
        return {
            "wall_seconds": time.monotonic() - self._started_at,
            "processes": {
                k: round(v, 3) for k, v in used.items() if not k.startswith("postgres-backend-")
            },
            "database_backends": round(backends, 3),
            "total": sum(used.values()),
        }


# --- The alert receiver ---------------------------------------------------------------


class AlertReceiver:
    """An HTTP endpoint (Apprise ``json://``) and an SMTP server (aiosmtpd) on loopback,
    recording which product each alert is about and when it arrived."""

    def __init__(self) -> None:
        self.http_port = free_port()
        self.smtp_port = free_port()
        self.alerts: dict[str, list[Alert]] = {"http": [], "smtp": []}
        self.unreadable = 0
        self._lock = threading.Lock()
        self._loop_thread: threading.Thread | None = None
        self._stop: Any = None
        self._smtp: Any = None

    def _record(self, channel: str, n: int | None) -> None:
        at = time.time()
        with self._lock:
            if n is None:
                self.unreadable += 1
            else:
                self.alerts[channel].append(Alert(n, at))

    def received(self, channel: str, since: float = 0.0) -> list[Alert]:
        with self._lock:
            return [a for a in self.alerts[channel] if a.at >= since]

    def start(self) -> AlertReceiver:
        import asyncio

        from aiohttp import web
        from aiosmtpd.controller import Controller

        receiver = self

        async def on_post(request: web.Request) -> web.Response:
            text = await request.text()
            try:
                message = str(json.loads(text).get("message", ""))
            except ValueError:
                message = text
            receiver._record("http", capacity_shop.product_number(message))
            return web.Response(text="ok")

        class Handler:
            async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:
                n = None
                for rcpt in envelope.rcpt_tos:
                    n = subscriber_number(str(rcpt))
                    if n is not None:
                        break
                receiver._record("smtp", n)
                return "250 OK"

        self._smtp = Controller(Handler(), hostname="127.0.0.1", port=self.smtp_port)
        self._smtp.start()
        ready = threading.Event()

        def serve() -> None:
            loop = asyncio.new_event_loop()
            stop = asyncio.Event()

            async def main() -> None:
                app = web.Application()
                app.router.add_post("/{tail:.*}", on_post)
                runner = web.AppRunner(app, access_log=None)
                await runner.setup()
                await web.TCPSite(runner, "127.0.0.1", self.http_port).start()
                ready.set()
                await stop.wait()
                await runner.cleanup()

            self._stop = (loop, stop)
            loop.run_until_complete(main())
            loop.close()

        self._loop_thread = threading.Thread(target=serve, daemon=True, name="alert-receiver")
        self._loop_thread.start()
        ready.wait(30)
        return self

    def stop(self) -> None:
        if self._smtp is not None:
            self._smtp.stop()
        if self._stop is not None:
            loop, stop = self._stop
            loop.call_soon_threadsafe(stop.set)
        if self._loop_thread is not None:
            self._loop_thread.join(10)


def subscriber_number(address: str) -> int | None:
    """n of ``user-n@bench.example`` (the benchmark's subscriber of product n)."""
    local = address.strip("<> ").split("@", 1)[0]
    if not local.startswith("user-") or not local[5:].isdigit():
        return None
    return int(local[5:])


def outbox_alerts(outbox: Path) -> list[Alert]:
    """Alerts the polling baseline wrote: product from the recipient, time = file mtime."""
    out: list[Alert] = []
    if not outbox.exists():
        return out
    for eml in outbox.glob("*.eml"):
        message = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
        n = subscriber_number(str(message.get("To", "")))
        if n is not None:
            out.append(Alert(n, eml.stat().st_mtime))
    return out


# --- One run: a system, N products ------------------------------------------------------


@dataclass
class Plan:
    interval: float
    change_fraction: float
    min_changes: int
    seed: int
    workdir: Path
    # Alerts are awaited until interval + 10 s + this after the last drop (None: a
    # quarter interval, at least 10 s); later ones count as missed.
    extra_wait: float | None = None
    markup: str = "full"  # capacity_shop.MARKUPS

    @property
    def window(self) -> float:
        return 2 * self.interval

    @property
    def sweep_timeout(self) -> float:
        return 60 + 2 * self.interval

    @property
    def grace(self) -> float:
        return max(10.0, self.interval / 4) if self.extra_wait is None else self.extra_wait


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def start_shop(plan: Plan, products: int, label: str) -> tuple[Process, int]:
    port = free_port()
    shop = Process(
        f"shop-{label}-{products}",
        [
            sys.executable,
            "-m",
            "bench.capacity_shop",
            "--port",
            str(port),
            "--products",
            str(products),
            "--metrics-port",
            str(free_port()),
            "--markup",
            plan.markup,
        ],
        plan.workdir / "logs" / f"shop-{label}-{products}.log",
        cwd=ROOT,
    ).start()
    shop.wait_ready(lambda: _port_open(port), 120, "serving pages")
    return shop, port


def _port_open(port: int) -> bool:
    try:
        wait_for_port("127.0.0.1", port, 0.5)
        return True
    except (TimeoutError, OSError):
        return False


def measure(
    label: str,
    products: int,
    plan: Plan,
    shop_port: int,
    meter: SystemMeter,
    alerts: Callable[[], list[Alert]],
    alive: Callable[[], None],
    log: Callable[[str], None],
) -> dict[str, Any]:
    """From a system checking ``products`` pages of the shop: first sweep, the drops, the
    alerts. ``alerts()`` returns every alert of this system so far."""
    result: dict[str, Any] = {"system": label, "products": products, "load_start": _load()}
    began = time.monotonic()
    fetches_at_start = capacity_shop.stats(shop_port)["fetches"]

    def sweep_rate() -> float:
        fetched = capacity_shop.stats(shop_port)["fetches"] - fetches_at_start
        return fetched / max(time.monotonic() - began, 1e-9)

    while capacity_shop.stats(shop_port)["fetched_products"] < products:
        alive()
        meter.sample_rss()
        if time.monotonic() - began > plan.sweep_timeout:
            done = capacity_shop.stats(shop_port)["fetched_products"]
            log(
                f"[{NAME}] {label} N={products}: first sweep not done in "
                f"{plan.sweep_timeout:.0f} s ({done:.0f}/{products} fetched, "
                f"{sweep_rate():.1f} checks/s): not held"
            )
            result.update(
                first_sweep_seconds=None,
                first_sweep_fetched=done,
                # What it managed: N it could check per interval is about this x interval.
                first_sweep_checks_per_second=sweep_rate(),
                held=False,
                reason="first sweep too slow",
                load_end=_load(),
            )
            return result
        time.sleep(1.0)
    result["first_sweep_checks_per_second"] = sweep_rate()
    result["first_sweep_seconds"] = time.monotonic() - began
    time.sleep(5)  # the last pages fetched are processed before any price moves
    start = time.time() + 2
    changes = capacity_shop.arm(
        shop_port, start, plan.window, plan.change_fraction, plan.seed, plan.min_changes
    )
    time.sleep(max(0.0, start - time.time()))
    fetches_before = capacity_shop.stats(shop_port)["fetches"]
    meter.start()
    log(
        f"[{NAME}] {label} N={products}: first sweep {result['first_sweep_seconds']:.0f} s; "
        f"{changes} drops over {plan.window:.0f} s"
    )
    while time.time() < start + plan.window:
        alive()
        meter.sample_rss()
        time.sleep(2.0)
    cpu = meter.stop()
    checks = capacity_shop.stats(shop_port)["fetches"] - fetches_before
    deadline = start + plan.window + plan.interval + SLACK_SECONDS + plan.grace
    while time.time() < deadline:
        alive()
        meter.sample_rss()
        made = capacity_shop.applied_changes(shop_port)
        if (
            len(made) >= changes
            and match_alerts([(c.n, c.applied_at) for c in made], alerts()).missed == 0
        ):
            break
        time.sleep(2.0)
    time.sleep(5)  # late duplicates
    made = capacity_shop.applied_changes(shop_port)
    outcome = match_alerts([(c.n, c.applied_at) for c in made], alerts())
    rate = checks / cpu["wall_seconds"]
    result.update(
        changes_scheduled=changes,
        outcome=outcome.summary(),
        checks=checks,
        checks_per_second=rate,
        checks_per_second_needed=products / plan.interval,
        cpu=cpu,
        cpu_ms_per_check=1000 * cpu["total"] / checks if checks else None,
        cpu_cores=cpu["total"] / cpu["wall_seconds"],
        peak_rss_mb=meter.peak_rss / 2**20,
        held=held(outcome, plan.interval),
        load_end=_load(),
    )
    tta = result["outcome"]["time_to_alert"]
    log(
        f"[{NAME}] {label} N={products}: held={result['held']}, time to alert p50/p95 "
        f"{_s(tta['p50_ms'])}/{_s(tta['p95_ms'])}, {outcome.alerted}/{outcome.changes} alerted "
        f"(missed {outcome.missed}, dup {outcome.duplicates}, spurious {outcome.spurious}), "
        f"{rate:.1f} checks/s (needed {products / plan.interval:.1f}), "
        f"{result['cpu_ms_per_check'] or 0:.1f} ms CPU/check, RSS {result['peak_rss_mb']:.0f} MB, "
        f"load {result['load_start']} -> {result['load_end']}"
    )
    return result


def _s(ms: float | None) -> str:
    return "n/a" if ms is None else f"{ms / 1000:.1f} s"


def run_changedetection(
    products: int,
    plan: Plan,
    receiver: AlertReceiver,
    log: Callable[[str], None],
) -> dict[str, Any]:
    entry = capacity_peer.ensure_installed(log=log)
    shop, port = start_shop(plan, products, "changedetection")
    peer = capacity_peer.ChangeDetection(
        entry, plan.workdir / "logs" / f"changedetection-{products}.log"
    )
    try:
        peer.start()
        notify = f"json://127.0.0.1:{receiver.http_port}/changedetection"
        began = time.monotonic()
        since = time.time()
        peer.create_watches(
            [
                capacity_peer.watch_body(capacity_shop.product_url(port, n), plan.interval, notify)
                for n in range(products)
            ]
        )
        log(
            f"[{NAME}] changedetection.io: {products} watches created in "
            f"{time.monotonic() - began:.0f} s"
        )

        def alive() -> None:
            assert peer.process is not None
            if not peer.process.running:
                raise RuntimeError(f"changedetection.io exited:\n{peer.process.log_tail(3000)}")

        return measure(
            "changedetection",
            products,
            plan,
            port,
            SystemMeter({"changedetection.io": peer.pid}),
            lambda: receiver.received("http", since),
            alive,
            log,
        )
    finally:
        peer.stop()
        shop.stop()


def run_pricewatch(
    products: int,
    plan: Plan,
    receiver: AlertReceiver,
    partitions: int,
    bootstrap_servers: str | None,
    kafka_embedded: bool,
    log: Callable[[str], None],
) -> dict[str, Any]:
    shop, port = start_shop(plan, products, "pricewatch")
    try:
        with Services(plan.workdir / "pricewatch", bootstrap_servers, kafka_embedded) as services:
            database_url = services.database()
            settings = services.settings(
                f"{NAME}-pricewatch",
                partitions,
                database_url=database_url,
                email_backend="smtp",
                smtp_host="127.0.0.1",
                smtp_port=receiver.smtp_port,
                allowed_private_hosts=f"127.0.0.1:{port}",
                default_check_interval_seconds=plan.interval,
                # Every product is on one local host: per-host politeness opened up, as
                # changedetection.io has none (the defaults allow one request/s a host).
                host_min_request_interval_seconds=0.0,
                host_max_concurrent_requests=16,
            )
            worker = spawn_worker(settings, "w0")
            members = [
                worker,
                spawn(settings, "scraper", ["scraper"]),
                spawn(settings, "postgres-sink", ["sink", "postgres"]),
                spawn(settings, "email-sink", ["sink", "email"]),
            ]
            with roles(*members):
                for role in members:
                    role.wait_ready()
                since = time.time()
                produce_subscriptions(
                    settings,
                    [
                        bench_subscription(capacity_shop.product_url(port, n), n)
                        for n in range(products)
                    ],
                )
                wait_tracked([worker], products, 120 + products / 200)
                pids = {role.name: role.pid for role in members}
                if services.broker_pid is not None:
                    pids["broker"] = services.broker_pid

                def alive() -> None:
                    for role in members:
                        role.check_alive()

                return measure(
                    "pricewatch",
                    products,
                    plan,
                    port,
                    SystemMeter(pids, database_url),
                    lambda: receiver.received("smtp", since),
                    alive,
                    log,
                )
    finally:
        shop.stop()


def run_polling(
    products: int, plan: Plan, partitions: int, log: Callable[[str], None]
) -> dict[str, Any]:
    from pricewatch.settings import Settings

    from .polling_baseline import create_schema

    shop, port = start_shop(plan, products, "polling")
    # A database only: the baseline uses no broker ("unused" keeps Services from starting one).
    try:
        with Services(plan.workdir / "polling", "127.0.0.1:1", True) as services:
            database_url = services.database()
            outbox = plan.workdir / "polling" / "outbox"
            settings = Settings(
                database_url=database_url,
                outbox_dir=outbox,
                data_dir=plan.workdir / "polling",
                email_backend="outbox",
                topic_partitions=partitions,
            )
            create_schema(
                database_url,
                [
                    (n, capacity_shop.product_url(port, n), f"user-{n}@bench.example")
                    for n in range(products)
                ],
            )
            job = spawn(
                settings,
                "polling-baseline",
                ["--interval", str(plan.interval)],
                module="bench.polling_baseline",
            )
            with roles(job):
                job.wait_ready()
                return measure(
                    "polling",
                    products,
                    plan,
                    port,
                    SystemMeter({job.name: job.pid}, database_url),
                    lambda: outbox_alerts(outbox),
                    job.check_alive,
                    log,
                )
    finally:
        shop.stop()


# --- The benchmark ----------------------------------------------------------------------


def run(
    products: Sequence[int] = (100, 300, 1_000, 3_000, 10_000),
    interval: float = 60.0,
    systems: Sequence[str] = SYSTEMS,
    change_fraction: float = 0.1,
    min_changes: int = 100,
    keep_going: bool = False,
    partitions: int = 4,
    bootstrap_servers: str | None = None,
    kafka_embedded: bool = False,
    seed: int = 20,
    extra_wait: float | None = None,
    markup: str = "full",
    results_dir: Path = RESULTS_DIR,
    log: Callable[[str], None] = print,
) -> BenchResult:
    started = time.perf_counter()
    plan = Plan(
        interval,
        change_fraction,
        min_changes,
        seed,
        results_dir / "work" / NAME,
        extra_wait,
        markup,
    )
    (plan.workdir / "logs").mkdir(parents=True, exist_ok=True)
    versions = {"changedetection.io": None, "python": sys.version.split()[0]}
    if "changedetection" in systems:
        entry = capacity_peer.ensure_installed(log=log)
        versions["changedetection.io"] = capacity_peer.installed_version(entry)
    receiver = AlertReceiver().start()
    runs: list[dict[str, Any]] = []
    failed: set[str] = set()
    incomplete: list[str] = []
    try:
        for n in sorted(products):
            for system in systems:
                if system in failed and not keep_going:
                    continue
                log(f"[{NAME}] {LABELS[system]}: {n} products, every {interval:.0f} s")
                try:
                    if system == "changedetection":
                        result = run_changedetection(n, plan, receiver, log)
                    elif system == "pricewatch":
                        result = run_pricewatch(
                            n, plan, receiver, partitions, bootstrap_servers, kafka_embedded, log
                        )
                    else:
                        result = run_polling(n, plan, partitions, log)
                except Exception as error:  # a run that broke is reported, the rest go on
                    log(f"[{NAME}] {LABELS[system]} N={n} FAILED: {error}")
                    result = {
                        "system": system,
                        "products": n,
                        "held": False,
                        "error": f"{error}\n{traceback.format_exc()}"[-4000:],
                    }
                    incomplete.append(f"{system} N={n}")
                runs.append(result)
                if not result["held"]:
                    failed.add(system)
    finally:
        receiver.stop()
    summary = summarize(runs, systems, interval)
    return BenchResult(
        name=NAME,
        description=__doc__ or "",
        candidate="Pricewatch: worker + scraper + postgres sink + email sink + broker "
        "(+ its PostgreSQL backends)",
        baseline=f"changedetection.io {capacity_peer.VERSION} (restock processor, plain HTTP); "
        "also bench.polling_baseline",
        params={
            "products": sorted(products),
            "interval_seconds": interval,
            "systems": list(systems),
            "change_fraction": change_fraction,
            "min_changes": min_changes,
            "change_window_seconds": plan.window,
            "held_rule": f"every drop alerted and time to alert p95 <= interval + "
            f"{SLACK_SECONDS:.0f} s",
            "page_bytes": capacity_shop.PAGE_BYTES,
            "page_markup": markup,
            "partitions": partitions,
            "broker": "embedded tansu" if bootstrap_servers is None else bootstrap_servers,
            "changedetection_settings": {
                "processor": "restock_diff",
                "fetch_backend": "html_requests",
                "follow_price_changes": True,
                "in_stock_processing": "off",
                "LOGGER_LEVEL": capacity_peer.LOG_LEVEL,
                "workers": "its default (FETCH_WORKERS unset)",
            },
            "pricewatch_settings": {
                "check_jitter_fraction": "default (0.1)",
                "host_min_request_interval_seconds": 0.0,
                "host_max_concurrent_requests": 16,
                "alerts": "email sink over SMTP to a local aiosmtpd",
            },
            "versions": versions,
        },
        rows=summary["rows"],
        extra={
            "system_runs": runs,
            "largest_held": summary["largest_held"],
            "held_every_n_tried": summary["held_every_n_tried"],
            "tables": [summary["table"]],
            "incomplete": incomplete,
        },
        elapsed_seconds=time.perf_counter() - started,
    )


def summarize(
    runs: list[dict[str, Any]], systems: Sequence[str], interval: float
) -> dict[str, Any]:
    verdicts: dict[str, dict[int, bool]] = {s: {} for s in systems}
    for r in runs:
        verdicts[r["system"]][r["products"]] = bool(r["held"])
    largest = {s: largest_held(v) for s, v in verdicts.items()}
    # Held at every N tried: the ladder, not the system, set the limit.
    bounded = {s: bool(v) and all(v.values()) for s, v in verdicts.items()}
    rows_out = []
    for r in runs:
        outcome = r.get("outcome") or {}
        tta = outcome.get("time_to_alert") or {}
        rows_out.append(
            [
                LABELS[r["system"]],
                f"{r['products']:,}",
                "yes"
                if r["held"]
                else "NO"
                + (f" ({r['reason']})" if r.get("reason") else "")
                + (" (error)" if r.get("error") else ""),
                f"{_s(tta.get('p50_ms'))} / {_s(tta.get('p95_ms'))} / {_s(tta.get('max_ms'))}",
                f"{outcome.get('alerted', 0)}/{outcome.get('changes', 0)}" if outcome else "-",
                f"{outcome.get('missed', '-')} / {outcome.get('duplicates', '-')} / "
                f"{outcome.get('spurious', '-')}",
                f"{r['checks_per_second']:.1f} / {r['checks_per_second_needed']:.1f}"
                if "checks_per_second" in r
                else f"first sweep {r['first_sweep_checks_per_second']:.1f} / "
                f"{r['products'] / interval:.1f}"
                if r.get("first_sweep_checks_per_second")
                else "-",
                f"{r['cpu_ms_per_check']:.1f}" if r.get("cpu_ms_per_check") else "-",
                f"{100 * r['cpu_cores']:.0f}%" if "cpu_cores" in r else "-",
                f"{r['peak_rss_mb']:.0f}" if "peak_rss_mb" in r else "-",
                f"{r.get('load_start', ['-'])[0]} -> {r.get('load_end', ['-'])[0]}",
            ]
        )
    table = {
        "title": f"capacity: every product checked every {interval:.0f} s; held = every drop "
        f"alerted and p95 <= {interval + SLACK_SECONDS:.0f} s",
        "columns": [
            "system",
            "N",
            "held",
            "time to alert p50/p95/max",
            "alerted",
            "missed/dup/spurious",
            "checks/s done/needed",
            "CPU ms/check",
            "CPU (1 core=100%)",
            "peak RSS MB",
            "load 1 min start -> end",
        ],
        "rows": rows_out,
    }
    rows: list[Row] = []
    if "pricewatch" in systems and "changedetection" in systems:
        pw, cd = largest["pricewatch"], largest["changedetection"]
        notes = [
            f"{LABELS[s]} held every N tried: a lower bound"
            for s in ("pricewatch", "changedetection")
            if bounded[s]
        ]
        rows.append(
            Row(
                case=f"largest N held at {interval:.0f} s (of the ladder)",
                candidate=Figure([] if pw is None else [float(pw)], unit="products"),
                baseline=Figure([] if cd is None else [float(cd)], unit="products"),
                # 10x changedetection.io, once its limit is known (else the ladder's top).
                aim=10 * cd if cd and not bounded["changedetection"] else None,
                notes="; ".join(notes),
            )
        )
        by_key = {(r["system"], r["products"]): r for r in runs}
        for n in sorted({r["products"] for r in runs}):
            a, b = by_key.get(("pricewatch", n)), by_key.get(("changedetection", n))
            if not a or not b or not a.get("cpu_ms_per_check") or not b.get("cpu_ms_per_check"):
                continue
            rows.append(
                Row(
                    case=f"CPU per check, {n:,} products",
                    candidate=Figure([a["cpu_ms_per_check"]], "ms", higher_is_better=False),
                    baseline=Figure([b["cpu_ms_per_check"]], "ms", higher_is_better=False),
                )
            )
            p95a = (a.get("outcome") or {}).get("time_to_alert", {}).get("p95_ms")
            p95b = (b.get("outcome") or {}).get("time_to_alert", {}).get("p95_ms")
            if p95a is not None and p95b is not None:
                rows.append(
                    Row(
                        case=f"time to alert p95, {n:,} products",
                        candidate=Figure([p95a / 1000], "s", higher_is_better=False),
                        baseline=Figure([p95b / 1000], "s", higher_is_better=False),
                    )
                )
    return {
        "largest_held": largest,
        "held_every_n_tried": bounded,
        "table": table,
        "rows": rows,
    }
