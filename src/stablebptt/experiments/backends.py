"""Where a sweep's jobs run: in this process, in local worker processes, or as Ray tasks.

A job is a picklable top-level function and its arguments; every backend calls the same function, so both
backends write identical run folders. Each worker computes single-threaded (`WORKER_ENV`) so that K workers
on K cores do not oversubscribe them, and does not preallocate GPU memory (workers may share a GPU).

A Ray task whose worker process dies (killed, out of memory, node lost) is run again, up to `RAY_MAX_RETRIES`
times; a sweep's job resumes its run folders from their checkpoints (the dead worker's folder locks are freed by
the kernel). A job still lost after that is reported through `run_jobs`'s `on_lost` and the other jobs go on.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from ..core.checks import BadArgument, BadInput, described
from ..runs.faults import fault_env

BACKENDS = ("local", "ray")
# Times a Ray task is run again after its worker process died (Ray's default for tasks, stated here). Exceptions
# raised by a job are not retried (`retry_exceptions=False`): sweep jobs never raise, and rerunning one would not
# help.
RAY_MAX_RETRIES = 3

WORKER_ENV = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "XLA_PYTHON_CLIENT_PREALLOCATE": "false",
}
_XLA_SINGLE_THREAD = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"

Job = tuple[Callable[..., Any], tuple[Any, ...]]
OnLost = Callable[[int, str], Any]


def worker_env() -> dict[str, str]:
    """Environment variables for a worker process (user XLA_FLAGS are kept, single-threading added)."""
    flags = os.environ.get("XLA_FLAGS", "")
    if "intra_op_parallelism_threads" not in flags:
        flags = f"{flags} {_XLA_SINGLE_THREAD}".strip()
    return {**WORKER_ENV, "XLA_FLAGS": flags}


@contextmanager
def _environment(env: dict[str, str]) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def default_workers() -> int:
    """The cores this process may run on (its CPU affinity, e.g. under ``taskset``; else every core)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # no affinity on this platform (macOS)
        return os.cpu_count() or 1


def run_jobs(
    jobs: Sequence[Job],
    *,
    backend: str = "local",
    workers: int | None = None,
    address: str | None = None,
    on_lost: OnLost | None = None,
) -> Iterator[tuple[int, Any]]:
    """Run `jobs` and yield ``(index, result)`` as each one finishes (in any order).

    Args:
        backend: ``"local"``: `workers` processes (spawned: JAX is not fork-safe), or this very process when
            `workers` is 1; ``"ray"``: Ray tasks, one CPU each, on the cluster at `address` (a new local Ray
            instance with `workers` CPUs when None, or the instance already initialised in this process).
        workers: parallel processes (default: number of cores).
        on_lost: Ray only: ``on_lost(index, message)`` gives the result yielded for job `index` when its task
            failed after `RAY_MAX_RETRIES` retries (or raised); `message` is one line. None: raise `JobLost`.
    """
    if backend not in BACKENDS:
        raise BadInput(f"unknown backend {backend!r}; allowed: {', '.join(BACKENDS)}")
    workers = workers or default_workers()
    if backend == "ray":
        yield from _run_ray(jobs, workers, address, on_lost)
    elif workers == 1:
        for i, (fn, args) in enumerate(jobs):
            yield i, fn(*args)
    else:
        yield from _run_processes(jobs, workers)


def _run_processes(jobs: Sequence[Job], workers: int) -> Iterator[tuple[int, Any]]:
    context = multiprocessing.get_context("spawn")
    # Workers are spawned on demand (at submit) and inherit the environment at that moment.
    with _environment(worker_env()):
        executor = cf.ProcessPoolExecutor(max_workers=min(workers, max(len(jobs), 1)), mp_context=context)
        try:
            futures = {executor.submit(fn, *args): i for i, (fn, args) in enumerate(jobs)}
            for future in cf.as_completed(futures):
                yield futures[future], future.result()
        finally:
            executor.shutdown(wait=True, cancel_futures=True)


def _call(fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    return fn(*args)


class JobLost(RuntimeError):
    """A Ray task that failed for good (its worker died on every try, or the job raised)."""


def _run_ray(
    jobs: Sequence[Job], workers: int, address: str | None, on_lost: OnLost | None = None
) -> Iterator[tuple[int, Any]]:
    try:
        import ray
    except ImportError:
        raise BadArgument("$backend needs Ray: pip install 'stablebptt[ray]'", backend="ray") from None
    started = False
    if not ray.is_initialized():
        if address is None:
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=address, log_to_driver=False)
        started = True
    try:
        # Workers of a local instance inherit the environment of `ray.init` only: fault injection set later (or
        # for a cluster at `address`) must travel in the runtime environment.
        env = {**worker_env(), **fault_env()}
        remote = ray.remote(num_cpus=1, max_retries=RAY_MAX_RETRIES, retry_exceptions=False)(_call)
        remote = remote.options(runtime_env={"env_vars": env})
        pending = {remote.remote(fn, args): i for i, (fn, args) in enumerate(jobs)}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                index = pending.pop(ref)
                try:
                    result = ray.get(ref)
                except ray.exceptions.RayError as e:
                    message = _lost_message(e)
                    if on_lost is None:
                        raise JobLost(f"job {index}: {message}") from None
                    result = on_lost(index, message)
                yield index, result
    finally:
        if started:
            ray.shutdown()


def _lost_message(error: Exception) -> str:
    """One line on a Ray task that failed for good: its job raised, or its worker died on every try."""
    cause = getattr(error, "cause", None)  # RayTaskError: the job's own exception
    if isinstance(cause, BaseException):
        return f"the job raised {described(cause)}"
    return f"Ray task lost after {RAY_MAX_RETRIES} retries ({described(error)}); rerunning the sweep resumes it"
