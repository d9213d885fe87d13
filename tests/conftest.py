"""Shared fixtures and the test session's settings. Tests run on the CPU; float64 is switched on per test where
a tolerance needs it.

Speed and memory of the suite (README: under 6 minutes and 2 GB on 2 cores):
- a persistent JAX compilation cache in ``.pytest_cache/jax-compilation-cache``, shared by the test processes of
  a run and by the subprocesses they start (the environment variables are inherited), and kept between runs; the
  commands use it too (``STABLEBPTT_CACHE``), never the user's own cache;
- XLA's backend optimisation level 0 for the tests' programs, and its older CPU loop emitters where this jaxlib
  still has them (together about a third less wall time for the suite than level 0 alone: 320 s against 473 s on
  2 cores; every tolerance holds, and runs compared bit for bit are compiled alike);
- two pytest-xdist workers, one test file per worker at a time (pyproject.toml), and JAX's in-memory caches
  cleared after a test when the worker holds more than 1 GB.
Set STABLEBPTT_TEST_OPTIMIZE=1 to compile with XLA's default optimisations instead. See tests/README.md.
"""

from __future__ import annotations

import ctypes
import gc
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault(
    "JAX_COMPILATION_CACHE_DIR", str(Path(__file__).resolve().parents[1] / ".pytest_cache" / "jax-compilation-cache")
)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
# The commands the tests run (in this process and in subprocesses) use the same cache, never the user's own.
os.environ.setdefault("STABLEBPTT_CACHE", os.environ["JAX_COMPILATION_CACHE_DIR"])
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # on a GPU the workers share it
if os.environ.get("STABLEBPTT_TEST_OPTIMIZE") != "1" and "xla_backend_optimization_level" not in os.environ.get(
    "XLA_FLAGS", ""
):
    # Set once, in pytest's main process: its xdist workers and the commands the tests start inherit it. XLA is
    # retiring the older loop emitters (openxla/xla#48001) and aborts on a flag it does not know: one short
    # subprocess asks this jaxlib first.
    quick = f"{os.environ.get('XLA_FLAGS', '')} --xla_backend_optimization_level=0".strip()
    older = f"{quick} --xla_cpu_use_fusion_emitters=false"
    probe = [sys.executable, "-c", "import jax; jax.jit(abs)(1.0)"]
    known = subprocess.run(probe, env={**os.environ, "XLA_FLAGS": older}, capture_output=True, timeout=120)
    os.environ["XLA_FLAGS"] = older if known.returncode == 0 else quick

import contextlib

import jax
import pytest
from packaging.version import Version  # a dependency of pytest

CLEAR_ABOVE_MB = 1024


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="run tests marked slow")


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the xdist_group marks
def pytest_collection_modifyitems(config, items):
    _group_module_fixture_users(items)
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def _group_module_fixture_users(items) -> None:
    """Mark the tests that use a module-scoped fixture with one xdist group per module and fixture parameter, so
    that under ``--dist loadgroup`` (.ci/run's slow lane) each such fixture is built by one worker, once (the
    MJX and Brax gradient programs take minutes to compile). Without ``loadgroup`` the marks do nothing."""
    for item in items:
        info, module = getattr(item, "_fixtureinfo", None), getattr(item, "module", None)
        if info is None or module is None:
            continue
        params = getattr(getattr(item, "callspec", None), "params", {})
        used = [
            f"{name}={params[name]}" if name in params else name
            for name in info.names_closure
            if (defs := info.name2fixturedefs.get(name)) and defs[-1].scope == "module"
        ]
        if used:
            item.add_marker(pytest.mark.xdist_group(f"{module.__name__}:{'+'.join(sorted(used))}"))


def pytest_configure(config):
    """Refuse the slow lane's ``--dist loadgroup`` under pytest 9.2: pytest-xdist 3.8 then ignores every
    xdist_group mark, silently (pytest-dev/pytest-xdist#1386), and each worker compiles the shared fixtures again."""
    if config.getoption("dist", None) == "loadgroup" and Version(pytest.__version__).release[:2] >= (9, 2):
        raise pytest.UsageError(
            f"pytest {pytest.__version__} with --dist loadgroup ignores xdist_group marks (pytest-xdist#1386): "
            "install the test extra's pytest with pip install -e '.[test]'"
        )


def _rss_mb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) // 1024
    return 0


def _trim() -> None:
    """Give freed memory back to the system (glibc keeps it otherwise); best effort."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


@pytest.fixture(autouse=True)
def _bounded_memory():
    """After each test: drop JAX's compiled programs if this process holds more than 1 GB (they come back
    from the persistent cache when needed)."""
    yield
    if _rss_mb() > CLEAR_ABOVE_MB:
        jax.clear_caches()
        gc.collect()
        _trim()


_PROFILE = os.environ.get("STABLEBPTT_TEST_PROFILE")  # a file: one line per test file, see tests/README.md
_module: dict = {}


def _usage() -> tuple[float, float, int]:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime, own.ru_maxrss // 1024


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    if not _PROFILE:
        yield
        return
    if _module.get("path") != item.path:
        _module.update(path=item.path, tests=0, start=(time.perf_counter(), *_usage()))
    yield
    _module["tests"] += 1
    if nextitem is None or nextitem.path != item.path:
        t0, cpu0, child0, peak0 = _module["start"]
        cpu, child, peak = _usage()
        with open(_PROFILE, "a") as f:  # pid, file, tests, wall s, CPU s, children's CPU s, peak MB before/after
            f.write(
                f"{os.getpid()}\t{item.path.relative_to(item.config.rootpath)}\t{_module['tests']}\t"
                f"{time.perf_counter() - t0:.1f}\t{cpu - cpu0:.1f}\t{child - child0:.1f}\t{peak0}\t{peak}\n"
            )


@pytest.fixture
def x64():
    """Compute in float64 inside the test, restoring the previous setting afterwards."""
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", previous)


@pytest.fixture
def key():
    return jax.random.PRNGKey(0)


@pytest.fixture
def unwritable_folder(tmp_path):
    """A folder path that cannot be written: under a read-only folder, or (as root, whom modes do not stop)
    under a regular file."""
    if os.geteuid() != 0:
        parent = tmp_path / "read-only"
        parent.mkdir()
        parent.chmod(0o500)
        return parent / "cache"
    (tmp_path / "afile").write_text("")
    return tmp_path / "afile" / "cache"
