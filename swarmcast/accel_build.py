"""Build the compiled simulator modules (see :mod:`swarmcast.accel`).

python -m swarmcast.accel_build            # compile unless a fresh build exists
python -m swarmcast.accel_build --force    # compile anyway
python -m swarmcast.accel_build --status   # which one this interpreter gets
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

from swarmcast.accel import GROUP, MANIFEST, MODULES, abi, accel_dir, check, sha256, status

logger = logging.getLogger(__name__)

#: Subpackages whose sources are staged for the type checker (compiled or not).
STAGED_PACKAGES = ("swarmcast.peer", "swarmcast.sim", "swarmcast.signaling")


def _stage(root: Path) -> None:
    """Copy the sources mypy needs into ``root`` laid out as the import package."""
    pkg = root / "swarmcast"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    for name in STAGED_PACKAGES:
        module = importlib.import_module(name)
        dest = root.joinpath(*name.split("."))
        dest.mkdir(parents=True, exist_ok=True)
        for src in Path(next(iter(module.__path__))).glob("*.py"):
            shutil.copy2(src, dest / src.name)


_SETUP = """\
from setuptools import setup
from mypyc.build import mypycify

setup(
    name="swarmcast-accel",
    ext_modules=mypycify(
        ["--ignore-missing-imports", "--follow-imports=silent", *{paths!r}],
        opt_level="3",
        group_name={group!r},
    ),
)
"""


def build(dest: Path | None = None, *, force: bool = False) -> Path:
    """Compile :data:`MODULES` into ``dest`` (default :func:`accel_dir`); returns ``dest``.

    Skipped when ``dest`` already holds a fresh build for this interpreter (unless ``force``).
    Raises ``RuntimeError`` with the compiler's output when mypy or the C compiler fails.
    """
    dest = dest or accel_dir()
    if not force and check(dest)[0] is not None:
        logger.info("compiled modules in %s are up to date", dest)
        return dest
    try:
        import mypy.version  # only the build needs it
    except ImportError as exc:
        raise RuntimeError("building needs mypy: pip install 'swarmcast[accel]'") from exc
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="swarmcast-accel-") as tmp:
        stage = Path(tmp)
        _stage(stage)
        files = [str(Path(*name.split("."))) + ".py" for name in MODULES]
        (stage / "setup.py").write_text(_SETUP.format(paths=files, group=GROUP))
        logger.info("compiling %d modules with mypyc (about 20 s)", len(MODULES))
        proc = subprocess.run(
            [sys.executable, "setup.py", "build_ext", "--inplace"],
            cwd=stage,
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-30:])
            raise RuntimeError(f"mypyc build failed:\n{tail}")
        suffix = sysconfig.get_config_var("EXT_SUFFIX")
        dest.parent.mkdir(parents=True, exist_ok=True)
        new = Path(tempfile.mkdtemp(prefix=".accel-", dir=dest.parent))
        new.chmod(0o755)
        group_file = f"{GROUP}__mypyc{suffix}"
        shutil.copy2(stage / group_file, new / group_file)
        modules = {}
        for name in MODULES:
            rel = Path(*name.split(".")).with_suffix("").as_posix() + suffix
            (new / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(stage / rel, new / rel)
            # The hash of the staged copy is the hash of what was compiled.
            source = stage / (Path(*name.split(".")).as_posix() + ".py")
            modules[name] = {"path": rel, "sha256": sha256(source)}
        manifest = {
            "abi": abi(),
            "mypy": mypy.version.__version__,
            "group": {"name": f"{GROUP}__mypyc", "path": group_file},
            "modules": modules,
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        (new / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    # Replace the old build in one rename, so a concurrent import sees one or the other.
    old = None
    if dest.exists():
        old = dest.with_name(dest.name + f".old-{os.getpid()}")
        dest.rename(old)
    new.rename(dest)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    logger.info("compiled modules written to %s in %.0f s", dest, time.monotonic() - started)
    return dest


def main(argv: list[str] | None = None) -> int:
    """Command line: build, or report the status."""
    parser = argparse.ArgumentParser(
        prog="python -m swarmcast.accel_build",
        description="Compile the simulator's hot modules with mypyc (see swarmcast.accel).",
    )
    parser.add_argument("--force", action="store_true", help="rebuild even if up to date")
    parser.add_argument(
        "--optional", action="store_true", help="on failure warn and exit 0 (what make deps does)"
    )
    parser.add_argument(
        "--status", action="store_true", help="only say whether this interpreter gets them"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.status:
        print(status().describe())
        return 0 if status().active else 1
    try:
        build(force=args.force)
    except RuntimeError as exc:
        if not args.optional:
            logger.error("%s", exc)
            return 1
        logger.warning("%s\nthe simulator will run pure Python (about 2x slower)", exc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
