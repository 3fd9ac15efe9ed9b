"""``swarmcast loadtest``: many simulated viewers against an origin and a signalling server.

```
swarmcast loadtest --viewers 50 --duration 60                  # local origin + signalling
swarmcast loadtest URL --signal ws://host:8790/ws --viewers 200 --seeds 1
swarmcast loadtest --viewers 50 --p2p off                      # the HTTP-only baseline
swarmcast loadtest ... --min-offload 0.8 --max-rebuffer 0.01   # CI gate (exit code)
swarmcast loadtest ... --redis redis://r:6379 --workers 8 --local-workers 2
swarmcast loadtest --join redis://r:6379                       # on each other host
```

Exit codes: 0 thresholds met, 1 a threshold missed, 2 bad flags or scenario, 3 the run is
invalid (a worker's event loop lagged or a worker died: the generator was the bottleneck),
4 the run could not be carried out (stream or services unreachable).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from swarmcast.loadtest.runner import LoadTestConfig

log = logging.getLogger(__name__)

EXIT_OK, EXIT_THRESHOLDS, EXIT_USAGE, EXIT_INVALID, EXIT_FAILED = 0, 1, 2, 3, 4


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``swarmcast loadtest`` (scenario flags as in ``swarmcast simulate``)."""
    a = parser.add_argument
    a("url", nargs="?", help="master playlist URL (omit: serve --media from a local origin)")
    a("--signal", metavar="URL", help="signalling URL (omit: start one locally for P2P runs)")
    a("--config", metavar="FILE", help="scenario JSON (docs/simulation.md); flags override")
    a("--viewers", type=int, help="concurrent viewers (default 100)")
    a("--duration", type=float, help="seconds of the run (default 120)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--live", dest="live", action="store_true", default=None, help="live")
    mode.add_argument("--vod", dest="live", action="store_false", help="VOD, spread starts")
    a("--seeds", type=int, help="Python seed peers (default 0)")
    a("--bitrate", type=float, metavar="KBPS", help="pick the variant closest to this bitrate")
    a("--join-spread", type=float, metavar="S", help="viewers join within S seconds (ramp)")
    a("--churn", type=float, metavar="S", help="mean viewing session, s (leavers are replaced)")
    a(
        "--upload-dist",
        metavar="DIST",
        help="viewer upload caps, Mbit/s, WEIGHT:LOW-HIGH,... (0 = upload off), "
        "default '0.1:0,0.3:0.5-2,0.6:2-10'",
    )
    a("--p2p", choices=("on", "off"), default="on", help="off: the same run over HTTP only")
    a("--set", action="append", default=[], metavar="KEY=VALUE", help="SchedulerConfig override")
    a("--seed", type=int, help="random seed of the plan (default 1)")
    a("--rendition", help="rendition id to play (default: closest to --bitrate)")
    a("--max-peers", type=int, default=10, help="peer links per viewer (default 10)")
    a(
        "--sctp-chunk",
        type=int,
        metavar="BYTES",
        help="load-generator option: SCTP chunks of BYTES (1201..16000) between Python peers "
        "(browsers keep standard ones); changes the wire, report it separately",
    )
    a("--workers", type=int, default=os.cpu_count() or 1, help="worker processes (default: cores)")
    a("--local-workers", type=int, help="with --redis: workers started here (default: all)")
    a("--redis", metavar="URL", help="Redis URL: let workers on other hosts join the run")
    a("--join", metavar="REDIS_URL", help="be a worker of a run coordinated through Redis")
    a("--join-timeout", type=float, default=60.0, help="seconds to wait for workers / a run")
    a("--max-lag", type=float, default=0.1, metavar="S", help="worker loop-lag p95 limit (0.1)")
    a("--min-offload", type=float, metavar="R", help="fail below this offload (0..1)")
    a("--max-rebuffer", type=float, metavar="R", help="fail above this rebuffering ratio (0..1)")
    a("--max-startup", type=float, metavar="S", help="fail above this startup p95, seconds")
    a("--max-never-started", type=int, metavar="N", help="fail if more sessions never played")
    a(
        "--chromium",
        type=int,
        default=0,
        metavar="M",
        help="M real Chromium viewers besides --viewers (needs /usr/bin/chromium, Playwright)",
    )
    a("--out", type=Path, default=Path("loadtest-out"), help="report folder")
    a("--media", type=Path, default=Path("media/sample"), help="content of the local origin")
    a("--host", default="127.0.0.1", help="address of local services (origin, signalling)")
    a("--allow-unverified", action="store_true", help="accept peer data without manifests")
    a("--no-plots", action="store_true", help="JSON only")
    a("--no-live", action="store_true", help="no live terminal view")
    a("--write-scenario", metavar="FILE", help="write the resolved scenario JSON and exit")


def run(args: argparse.Namespace) -> int:
    """Entry point of ``swarmcast loadtest``."""
    from swarmcast.runtime import run as run_loop

    if args.join:
        from swarmcast.loadtest.runner import join_run

        joined = run_loop(join_run(args.join, args.join_timeout))
        if not joined:
            wait = f"{args.join_timeout:.0f} s"
            sys.stderr.write(f"swarmcast loadtest: no run offered a worker slot within {wait}\n")
            return EXIT_FAILED
        return EXIT_OK
    config = _config(args)
    if isinstance(config, int):
        return config
    return _run(config, run_loop)


def _config(args: argparse.Namespace) -> LoadTestConfig | int:
    from swarmcast.loadtest.metrics import Thresholds
    from swarmcast.loadtest.runner import LoadTestConfig, LoadTestError
    from swarmcast.sim.cli import scenario_from_args
    from swarmcast.sim.scenario import ScenarioError

    if args.chromium > 0:
        from swarmcast.loadtest.chromium import ChromiumUnavailable, check_available

        try:
            check_available()
        except ChromiumUnavailable as exc:
            sys.stderr.write(f"swarmcast loadtest: {exc}\n")
            return EXIT_USAGE
    args.no_p2p = args.p2p == "off"
    args.download_dist = None
    try:
        scenario = scenario_from_args(args)
        if args.write_scenario:
            import json

            Path(args.write_scenario).write_text(json.dumps(scenario.to_json(), indent=1) + "\n")
            return EXIT_OK
        thresholds = Thresholds(
            min_offload=args.min_offload,
            max_rebuffer=args.max_rebuffer,
            max_startup_p95=args.max_startup,
            max_never_started=args.max_never_started,
        )
        return LoadTestConfig(
            scenario=scenario,
            url=args.url,
            signal_url=args.signal,
            out=args.out,
            workers=args.workers,
            local_workers=args.local_workers,
            redis_url=args.redis,
            rendition=args.rendition,
            max_peers=args.max_peers,
            max_lag=args.max_lag,
            thresholds=thresholds,
            media=args.media,
            host=args.host,
            join_timeout=args.join_timeout,
            require_integrity=not args.allow_unverified,
            live_view=not args.no_live,
            plots=not args.no_plots,
            log_level=_worker_log_level(),
            chromium=args.chromium,
            sctp_chunk=args.sctp_chunk,
        )
    except (ScenarioError, LoadTestError, ValueError) as exc:
        sys.stderr.write(f"swarmcast loadtest: {exc}\n")
        return EXIT_USAGE


def _run(config: LoadTestConfig, run_loop: Callable[..., Any]) -> int:
    from swarmcast.loadtest.live import LiveView, LogView
    from swarmcast.loadtest.output import write_folder
    from swarmcast.loadtest.runner import LoadTestError, run_loadtest

    view: LiveView | LogView
    terminal = sys.stderr.isatty() and config.live_view
    view = LiveView(config.max_lag) if terminal else LogView()
    try:
        if isinstance(view, LiveView):
            with view:
                result = run_loop(run_loadtest(config, on_update=view.update))
        else:
            result = run_loop(run_loadtest(config, on_update=view.update))
    except LoadTestError as exc:
        sys.stderr.write(f"swarmcast loadtest: {exc}\n")
        return EXIT_FAILED
    out = write_folder(config.out, result, plots=config.plots)
    report = result["report"]
    sys.stdout.write(summary_text(report, out) + "\n")
    if not report["generator"]["valid"]:
        return EXIT_INVALID
    return EXIT_OK if report["verdict"]["passed"] else EXIT_THRESHOLDS


def summary_text(report: dict, out: Path) -> str:
    """The few lines printed at the end of a run."""
    from swarmcast.loadtest.output import figures

    lines = [f"{name:34} {value}" for name, value in figures(report)]
    gen = report["generator"]
    if not gen["valid"]:
        lines.append("RUN INVALID (the load generator was the bottleneck):")
        lines += [f"  - {r}" for r in gen["reasons"]]
    for missed in report["verdict"]["missed"]:
        lines.append(f"THRESHOLD MISSED: {missed}")
    lines.append(f"report: {out / 'index.html'}")
    return "\n".join(lines)


def _worker_log_level() -> int:
    # Hundreds of viewers logging each player start at INFO would drown the live view: workers
    # log warnings only, unless the run was asked for debug output (-vv).
    root = logging.getLogger().getEffectiveLevel()
    return logging.DEBUG if root <= logging.DEBUG else logging.WARNING
