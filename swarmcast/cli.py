"""The ``swarmcast`` console command: one front for every role, each a subcommand.

Each subcommand lives in the module that owns the concept and exposes two functions:
``add_arguments(parser)`` and ``run(args) -> int``. Modules are imported only when their
subcommand is chosen, so ``swarmcast --help`` stays fast (aiortc and av are slow to import).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from swarmcast import __version__


@dataclass(frozen=True)
class Command:
    """A subcommand: its name, the module that implements it and a one-line summary."""

    name: str
    module: str
    summary: str


#: Every subcommand, in the order ``--help`` lists them. Modules that do not exist yet in this
#: checkout are left out of the listing (see :func:`available_commands`).
COMMANDS: tuple[Command, ...] = (
    Command("demo", "swarmcast.demo", "run the local demo on built-in defaults"),
    Command("sample", "swarmcast.samples.generate", "generate a deterministic HLS test stream"),
    Command("origin", "swarmcast.samples.origin", "serve HLS content (VOD and simulated live)"),
    Command("integrity", "swarmcast.samples.integrity", "write integrity manifests for playlists"),
    Command("signal", "swarmcast.signaling.cli", "run the signalling server"),
    Command("token", "swarmcast.signaling.tokens", "mint a signed join token"),
    Command("seed", "swarmcast.peer.seed", "run a Python seed peer next to an origin"),
    Command("view", "swarmcast.peer.viewer", "run a simulated viewer with a virtual player"),
    Command("loadtest", "swarmcast.loadtest.cli", "run many simulated viewers and report QoE"),
    Command("simulate", "swarmcast.sim.cli", "simulate a swarm in a discrete-event network"),
)


def _find_spec_safe(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def build_parser(selected: str | None = None) -> argparse.ArgumentParser:
    """Build the parser; only the ``selected`` subcommand's module is imported."""
    parser = argparse.ArgumentParser(
        prog="swarmcast",
        description="P2P content delivery for HLS over WebRTC. Each subcommand has --help.",
    )
    parser.add_argument("--version", action="version", version=f"swarmcast {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)"
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for cmd in COMMANDS:
        if not _find_spec_safe(cmd.module):
            continue
        p = sub.add_parser(cmd.name, help=cmd.summary, description=cmd.summary)
        if cmd.name == selected:
            importlib.import_module(cmd.module).add_arguments(p)
    return parser


def configure_logging(verbose: int, quiet: bool) -> None:
    """Send log records to stderr at a level chosen by -v/-q."""
    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if verbose < 2:
        # aiortc/aioice are chatty at INFO; keep them quiet unless asked.
        for noisy in ("aioice", "aiortc"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``swarmcast`` command."""
    argv = list(sys.argv[1:] if argv is None else argv)
    names = {c.name for c in COMMANDS}
    selected = next((a for a in argv if not a.startswith("-")), None)
    selected = selected if selected in names else None
    parser = build_parser(selected)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    configure_logging(args.verbose, args.quiet)
    module = importlib.import_module(next(c.module for c in COMMANDS if c.name == args.command))
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
