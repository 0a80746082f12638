"""``python -m bench [BENCHMARK ...] [options]``: run benchmarks, print a table, write JSON."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from . import (
    capacity,
    detector_agent,
    detector_pure,
    e2e,
    idle,
    postgres_sink,
    scale,
    scraper,
    stages,
    time_to_alert,
)
from .report import (
    RESULTS_DIR,
    BenchResult,
    format_extra_table,
    format_table,
    machine_info,
    write_json,
)

BENCHMARKS = (
    "detector_pure",
    "detector_agent",
    "postgres_sink",
    "scraper_extract",
    "scraper_e2e",
    "e2e",
    "stages",
    "time_to_alert",
    "scale",
    "idle",
    "capacity",
)
# Run only when named: it installs changedetection.io (pip) and takes ~1 h at 60 s.
ON_DEMAND = ("capacity",)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Pricewatch benchmarks. Each one measures a candidate and a naive "
        "baseline in the same run and prints their ratio. See bench/README.md.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "benchmarks",
        nargs="*",
        default=[],
        metavar="BENCHMARK",
        help=f"which to run, any of: {', '.join(BENCHMARKS)} (default: all but "
        f"{', '.join(ON_DEMAND)})",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small sizes (a smoke run of the harness; figures are noisy)",
    )
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)

    pure = parser.add_argument_group("detector_pure")
    pure.add_argument("--pure-products", type=int, default=10_000)
    pure.add_argument("--pure-observations", type=int, default=500_000)
    pure.add_argument("--pure-repeats", type=int, default=5)
    pure.add_argument("--pure-baseline-repeats", type=int, default=3)

    agent = parser.add_argument_group("detector_agent")
    agent.add_argument("--agent-observations", type=int, default=100_000)
    agent.add_argument("--agent-products", type=int, default=10_000)
    agent.add_argument(
        "--agent-streams",
        nargs="+",
        choices=detector_agent.STREAMS,
        default=list(detector_agent.STREAMS),
    )
    agent.add_argument(
        "--agent-repeats", type=int, default=1, help="worker runs per stream and variant"
    )
    agent.add_argument("--partitions", type=int, default=4)
    agent.add_argument(
        "--poll-interval", type=float, default=0.2, help="seconds between /metrics polls"
    )
    agent.add_argument(
        "--profile",
        action="store_true",
        help="attach py-spy to each worker while it processes (bench/results/profile-*.txt)",
    )
    agent.add_argument(
        "--no-ceiling",
        action="store_true",
        help="skip the two no-op agent runs that measure Faust's own per-event ceiling",
    )
    agent.add_argument(
        "--bootstrap-servers",
        default=None,
        help="use this Kafka cluster instead of starting the embedded tansu broker",
    )

    pg = parser.add_argument_group(
        "postgres_sink",
        "server: PRICEWATCH_BENCH_DATABASE_URL, else postgresql://postgres@127.0.0.1:5432/postgres "
        "(a throwaway database is created on it and dropped)",
    )
    pg.add_argument("--pg-products", type=int, default=10_000)
    pg.add_argument("--pg-observations", type=int, default=200_000)
    pg.add_argument("--pg-batch-size", type=int, default=500, help="the sink's max_batch")
    pg.add_argument("--pg-repeats", type=int, default=3)
    pg.add_argument(
        "--pg-baseline-observations",
        type=int,
        default=20_000,
        help="the baseline writes the first this many observations (a commit each)",
    )
    pg.add_argument("--pg-baseline-repeats", type=int, default=1)

    scr = parser.add_argument_group("scraper_extract / scraper_e2e")
    scr.add_argument("--extract-pages", type=int, default=300, help="distinct 100-300 KB pages")
    scr.add_argument("--extract-repeats", type=int, default=5)
    scr.add_argument("--extract-baseline-repeats", type=int, default=3)
    scr.add_argument("--e2e-requests", type=int, default=3000)
    scr.add_argument("--e2e-baseline-requests", type=int, default=500)
    scr.add_argument("--e2e-repeats", type=int, default=2)
    lat = parser.add_argument_group("e2e (observation -> notification -> email latency)")
    lat.add_argument(
        "--loads",
        type=_loads,
        nargs="+",
        action=_FlatLoads,
        default=[100.0, 1_000.0, 10_000.0],
        help="offered loads, observations/second (space- or comma-separated)",
    )
    lat.add_argument(
        "--e2e-no-baseline",
        action="store_true",
        help="skip the naive-agent baseline worker (bench/naive_worker.py) at the same loads",
    )
    lat.add_argument("--e2e-duration", type=float, default=60.0, help="seconds per load")
    lat.add_argument("--e2e-products", type=int, default=10_000)
    lat.add_argument(
        "--e2e-change-fraction",
        type=float,
        default=0.02,
        help="observations that change a price; half are drops, each one notification",
    )

    st = parser.add_argument_group("stages (throughput of each process)")
    st.add_argument("--stages", nargs="+", choices=stages.STAGES, default=list(stages.STAGES))
    st.add_argument("--stage-observations", type=int, default=100_000)
    st.add_argument("--stage-products", type=int, default=10_000)
    st.add_argument("--stage-scrape-requests", type=int, default=10_000)
    st.add_argument("--stage-shop-products", type=int, default=1_000)
    st.add_argument("--stage-notifications", type=int, default=3_000)

    tta = parser.add_argument_group(
        "time_to_alert (Pricewatch vs the polling baseline, same shop, same changes)"
    )
    tta.add_argument("--tta-products", type=int, default=2_000)
    tta.add_argument(
        "--tta-interval",
        type=float,
        default=60.0,
        help="seconds between checks of a product (both systems)",
    )
    tta.add_argument("--tta-changes", type=int, default=50, help="price drops made at the shop")

    sc = parser.add_argument_group("scale (worker cost per observation vs tracked products)")
    sc.add_argument("--scale-products", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    sc.add_argument(
        "--scale-sweeps", type=int, default=3, help="observations per product (first one learns)"
    )
    idl = parser.add_argument_group(
        "idle (the demo stack at rest, under a light load, drop -> email)"
    )
    idl.add_argument("--idle-seconds", type=float, default=60.0, help="per measurement")
    idl.add_argument("--idle-light-rate", type=float, default=5.0, help="obs/s, light load")
    idl.add_argument("--idle-flips", type=int, default=8, help="price drops timed to email")
    idl.add_argument(
        "--idle-no-baseline",
        action="store_true",
        help="skip the baseline stack (one process per role, fixed 20 ms fetch wait)",
    )
    cap = parser.add_argument_group(
        "capacity (Pricewatch vs changedetection.io and the polling baseline, same shop; "
        "run only when named)"
    )
    cap.add_argument(
        "--capacity-products",
        "--products",
        type=capacity.parse_ladder,
        default=[100, 300, 1_000, 3_000, 10_000],
        help="the ladder of product counts, comma-separated (e.g. 100,1k,3000); a system "
        "stops at its first N not held",
    )
    cap.add_argument(
        "--capacity-interval",
        "--interval",
        type=float,
        default=60.0,
        help="seconds between checks of a product (every system)",
    )
    cap.add_argument(
        "--capacity-systems",
        type=lambda text: [s for s in text.split(",") if s],
        default=list(capacity.SYSTEMS),
        help=f"comma-separated, any of {','.join(capacity.SYSTEMS)}",
    )
    cap.add_argument(
        "--capacity-change-fraction",
        type=float,
        default=0.1,
        help="products whose price drops (once each) during the run; at least "
        "--capacity-min-changes",
    )
    cap.add_argument("--capacity-min-changes", type=int, default=100)
    cap.add_argument(
        "--capacity-markup",
        choices=("full", "price-only"),
        default="full",
        help="the pages' schema.org offer: price and availability, or the price alone "
        "(availability in the text only)",
    )
    cap.add_argument(
        "--capacity-keep-going",
        action="store_true",
        help="try every N of the ladder even after a system did not hold a smaller one",
    )
    return parser


def _loads(text: str) -> list[float]:
    return [float(part) for part in text.split(",") if part.strip()]


class _FlatLoads(argparse.Action):
    """``--loads 100 2000`` and ``--loads 100,2000`` both give ``[100.0, 2000.0]``."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        setattr(namespace, self.dest, [load for group in values for load in group])


def _print_extra(result: BenchResult) -> None:
    for table in result.extra.get("tables", []):
        print()
        print(format_extra_table(table))
    costs = result.extra.get("cost_model_us")
    if costs:
        print(f"\n{result.name}: cost model (best us per call)")
        for name, us in costs.items():
            print(f"  {name:<40} {us:7.2f}")
    for run in result.extra.get("runs", []):
        print(
            f"\n{result.name}: {run['stream']}/{run['variant']}: {run['rate']:,.0f} obs/s, "
            f"start-up {run['startup_seconds']:.1f} s, processing "
            f"{run['processing_seconds']:.1f} s, worker CPU "
            f"{_pct(run['worker_cpu_percent'])}, broker CPU {_pct(run['broker_cpu_percent'])}"
        )
        profile = run.get("profile")
        if profile and "self_top" in profile:
            print(f"  py-spy (GIL-holding samples, self %) from {profile['file']}:")
            for name, pct in profile["self_top"][:12]:
                print(f"    {pct:5.1f}  {name}")
    ceiling = result.extra.get("faust_ceiling_obs_per_second")
    if ceiling:
        cells = ", ".join(
            f"{variant} {'n/a' if rate is None else f'{rate:,.0f}'} obs/s"
            for variant, rate in ceiling.items()
        )
        print(
            f"\n{result.name}: Faust's ceiling, an agent that only counts (same app and "
            f"broker): {cells}. No agent on Faust's stream goes faster in one worker."
        )


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f}%"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    unknown = sorted(set(args.benchmarks) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {BENCHMARKS}")
    selected = [name for name in BENCHMARKS if name in args.benchmarks] or [
        name for name in BENCHMARKS if name not in ON_DEMAND
    ]
    unknown_systems = sorted(set(args.capacity_systems) - set(capacity.SYSTEMS))
    if unknown_systems:
        parser.error(
            f"unknown --capacity-systems {unknown_systems}; choose from {capacity.SYSTEMS}"
        )
    machine = machine_info()
    print(
        f"machine: {machine['cpu_model']}, {machine['cores']} cores "
        f"({machine['usable_cores']} usable), Python {machine['python']}, "
        f"commit {machine['git_commit']}",
        flush=True,
    )
    load = machine["load_average_1_5_15"]
    if load and load[0] > 0.5:
        print(
            f"warning: load average {load[0]:.2f} before starting: other processes compete "
            "for the cores and will lower the figures",
            flush=True,
        )

    def log(message: str) -> None:
        print(message, flush=True)

    results: list[BenchResult] = []
    started = time.perf_counter()
    for name in selected:
        if name == "detector_pure":
            result = detector_pure.run(
                products=1_000 if args.quick else args.pure_products,
                observations=50_000 if args.quick else args.pure_observations,
                repeats=2 if args.quick else args.pure_repeats,
                baseline_repeats=1 if args.quick else args.pure_baseline_repeats,
                log=log,
            )
        elif name == "postgres_sink":
            result = postgres_sink.run(
                products=1_000 if args.quick else args.pg_products,
                observations=20_000 if args.quick else args.pg_observations,
                batch_size=args.pg_batch_size,
                repeats=2 if args.quick else args.pg_repeats,
                baseline_observations=2_000 if args.quick else args.pg_baseline_observations,
                baseline_repeats=args.pg_baseline_repeats,
                log=log,
            )
        elif name == "scraper_extract":
            result = scraper.run_extract(
                pages=30 if args.quick else args.extract_pages,
                repeats=2 if args.quick else args.extract_repeats,
                baseline_repeats=1 if args.quick else args.extract_baseline_repeats,
                log=log,
            )
        elif name == "scraper_e2e":
            result = scraper.run_e2e(
                requests=200 if args.quick else args.e2e_requests,
                baseline_requests=50 if args.quick else args.e2e_baseline_requests,
                repeats=1 if args.quick else args.e2e_repeats,
                results_dir=args.results_dir,
                log=log,
            )
        elif name == "e2e":
            result = e2e.run(
                loads=tuple(args.loads),
                baseline=not args.e2e_no_baseline,
                duration=10.0 if args.quick else args.e2e_duration,
                products=1_000 if args.quick else args.e2e_products,
                change_fraction=args.e2e_change_fraction,
                partitions=args.partitions,
                bootstrap_servers=args.bootstrap_servers,
                results_dir=args.results_dir,
                log=log,
            )
        elif name == "stages":
            result = stages.run(
                stages=tuple(args.stages),
                observations=20_000 if args.quick else args.stage_observations,
                products=1_000 if args.quick else args.stage_products,
                scrape_requests=2_000 if args.quick else args.stage_scrape_requests,
                shop_products=200 if args.quick else args.stage_shop_products,
                notifications=300 if args.quick else args.stage_notifications,
                partitions=args.partitions,
                poll_interval=args.poll_interval,
                bootstrap_servers=args.bootstrap_servers,
                results_dir=args.results_dir,
                log=log,
            )
        elif name == "time_to_alert":
            result = time_to_alert.run(
                products=200 if args.quick else args.tta_products,
                interval=10.0 if args.quick else args.tta_interval,
                changes=10 if args.quick else args.tta_changes,
                partitions=args.partitions,
                bootstrap_servers=args.bootstrap_servers,
                results_dir=args.results_dir,
                log=log,
            )
        elif name == "idle":
            result = idle.run(
                rest_seconds=15.0 if args.quick else args.idle_seconds,
                light_rate=args.idle_light_rate,
                flips=2 if args.quick else args.idle_flips,
                baseline=not args.idle_no_baseline,
                results_dir=args.results_dir,
                log=log,
            )
        elif name == "capacity":
            result = capacity.run(
                products=[20, 50] if args.quick else args.capacity_products,
                interval=15.0 if args.quick else args.capacity_interval,
                systems=args.capacity_systems,
                change_fraction=args.capacity_change_fraction,
                min_changes=args.capacity_min_changes,
                keep_going=args.capacity_keep_going,
                markup=args.capacity_markup,
                partitions=args.partitions,
                bootstrap_servers=args.bootstrap_servers,
                results_dir=args.results_dir,
                log=log,
            )
        elif name == "scale":
            result = scale.run(
                sizes=(500, 2_000) if args.quick else tuple(args.scale_products),
                sweeps=2 if args.quick else args.scale_sweeps,
                partitions=args.partitions,
                bootstrap_servers=args.bootstrap_servers,
                results_dir=args.results_dir,
                log=log,
            )
        else:
            result = detector_agent.run(
                observations=5_000 if args.quick else args.agent_observations,
                products=500 if args.quick else args.agent_products,
                streams=tuple(args.agent_streams),
                repeats=args.agent_repeats,
                partitions=args.partitions,
                poll_interval=args.poll_interval,
                profile=args.profile,
                ceiling=not args.no_ceiling,
                bootstrap_servers=args.bootstrap_servers,
                results_dir=args.results_dir,
                log=log,
            )
        path = write_json(result, machine, args.results_dir)
        log(f"[{name}] done in {result.elapsed_seconds:.0f} s -> {path}")
        results.append(result)

    for result in results:
        _print_extra(result)
    print()
    print(format_table(results))
    print(
        "\nratio = how many times better the candidate is (candidate / baseline median, "
        "or baseline / candidate where smaller is better; same run); "
        f"total {time.perf_counter() - started:.0f} s"
    )
    incomplete = [
        row.case
        for result in results
        for row in result.rows
        if not row.candidate.samples or not row.baseline.samples
    ]
    incomplete += [
        f"{result.name}: {what}"
        for result in results
        for what in result.extra.get("incomplete", [])
    ]
    if incomplete:
        print(f"INCOMPLETE (a process timed out or died): {', '.join(incomplete)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
