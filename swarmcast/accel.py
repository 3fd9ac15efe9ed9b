"""The simulator's hot modules compiled with mypyc: the same source files, built to C.

``swarmcast simulate`` spends its time in the sans-IO scheduler and the event engine. mypyc
compiles exactly those files (the type annotations become native attribute slots and C
arithmetic); it is not a re-implementation, and every real peer imports the same modules, so
the compiled build is what the whole test suite runs when it is present.

- ``python -m swarmcast.accel_build`` (``make accel``, part of ``make test`` and ``make demo``)
  stages the package sources, compiles :data:`MODULES` and writes the extension modules with
  a manifest (the SHA-256 of each source) under :func:`accel_dir`.
- ``import swarmcast`` calls :func:`install`: if the manifest matches this interpreter and
  **every** listed source still hashes to what was compiled, an import hook loads the
  compiled modules; otherwise everything stays pure Python (all or nothing: a compiled
  engine only accepts compiled scheduler objects) and :func:`status` says why.
- ``SWARMCAST_ACCEL=0`` forces pure Python (``1``, the default, uses a fresh build if any).

``python -m swarmcast.accel_build --status`` tells which one a process gets.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import logging
import os
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

logger = logging.getLogger(__name__)

#: The compiled modules (dependencies first). Everything they import stays interpreted.
MODULES: tuple[str, ...] = (
    "swarmcast.peer.bandwidth",
    "swarmcast.peer.cache",
    "swarmcast.peer.upload",
    "swarmcast.peer.scheduler",
    "swarmcast.sim.network",
    "swarmcast.sim.engine",
)
#: mypyc group name: the shared library is the top-level module ``<GROUP>__mypyc``.
GROUP = "swarmcast_accel"
#: Environment switch: "0" = pure Python.
ENV = "SWARMCAST_ACCEL"
#: Environment override of where builds live.
ENV_DIR = "SWARMCAST_ACCEL_DIR"
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class AccelStatus:
    """Whether this process runs the compiled modules, and why (not)."""

    active: bool
    reason: str

    def describe(self) -> str:
        """One line for logs and reports."""
        return f"compiled ({self.reason})" if self.active else f"pure Python ({self.reason})"


_status = AccelStatus(False, "not checked")


def accel_dir() -> Path:
    """Where builds live: ``$SWARMCAST_ACCEL_DIR``, else ``_accel/`` inside the package."""
    override = os.environ.get(ENV_DIR)
    return Path(override) if override else Path(__file__).resolve().parent / "_accel"


def status() -> AccelStatus:
    """What :func:`install` decided for this process."""
    return _status


def abi() -> str:
    """This interpreter's cache tag and extension suffix: what a build must have been made for."""
    return f"{sys.implementation.cache_tag}{sysconfig.get_config_var('EXT_SUFFIX')}"


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes (how the manifest identifies each compiled source)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def source_path(fullname: str) -> Path:
    """The ``.py`` file of ``fullname`` (imports its parent package, not the module)."""
    parent_name, _, _ = fullname.rpartition(".")
    parent: ModuleType = importlib.import_module(parent_name)
    spec = importlib.machinery.PathFinder.find_spec(fullname, list(parent.__path__))
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        raise FileNotFoundError(f"no Python source for {fullname}")
    return Path(spec.origin)


class _CompiledFinder(importlib.abc.MetaPathFinder):
    """Serves the compiled extension for each module of a fresh build (first in meta_path)."""

    def __init__(self, paths: dict[str, Path]) -> None:
        self.paths = paths

    def find_spec(self, fullname, path=None, target=None):  # the importlib.abc signature
        so = self.paths.get(fullname)
        if so is None:
            return None
        loader = importlib.machinery.ExtensionFileLoader(fullname, str(so))
        return importlib.util.spec_from_file_location(fullname, so, loader=loader)


def check(folder: Path) -> tuple[dict[str, Path] | None, str]:
    """The extension paths of a fresh, loadable build in ``folder``, or None and why not."""
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        return None, "not built: run `make accel`"
    try:
        manifest = json.loads(manifest_path.read_text())
        modules: dict[str, dict[str, str]] = manifest["modules"]
        group: dict[str, str] = manifest["group"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return None, f"unreadable build manifest ({exc}): run `make accel`"
    if manifest.get("abi") != abi():
        return None, f"built for {manifest.get('abi')}, this is {abi()}: run `make accel`"
    if sorted(modules) != sorted(MODULES):
        return None, "the build covers other modules: run `make accel`"
    paths: dict[str, Path] = {group["name"]: folder / group["path"]}
    for name in MODULES:
        try:
            current = sha256(source_path(name))
        except (OSError, ImportError) as exc:
            return None, f"cannot read the source of {name} ({exc})"
        if current != modules[name]["sha256"]:
            return None, f"{name} changed since the build: run `make accel`"
        paths[name] = folder / modules[name]["path"]
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        return None, f"build incomplete ({missing[0]} missing): run `make accel`"
    return paths, f"mypyc {manifest.get('mypy', '?')}, {len(MODULES)} modules"


def install() -> AccelStatus:
    """Put the import hook in place if a fresh build exists (called by ``import swarmcast``).

    Must run before any of :data:`MODULES` is imported; later calls change nothing.
    """
    global _status
    if _status.reason != "not checked":
        return _status
    if os.environ.get(ENV, "1") == "0":
        _status = AccelStatus(False, f"{ENV}=0")
        return _status
    already = [name for name in MODULES if name in sys.modules]
    if already:
        _status = AccelStatus(False, f"{already[0]} was imported before the hook")
        return _status
    paths, reason = check(accel_dir())
    if paths is None:
        _status = AccelStatus(False, reason)
        return _status
    sys.meta_path.insert(0, _CompiledFinder(paths))
    _status = AccelStatus(True, reason)
    return _status
