"""The training loop keeps nothing from one epoch to the next: resident memory stays flat over 200 epochs."""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os

import pytest

from stablebptt.runs import RunConfig, RunFolder

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss() -> int:
    """Resident memory after freed memory is given back to the system (so that only live memory counts: the
    allocator's reuse of pages freed before the test, e.g. by the suite's cache clearing, is not growth)."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


@pytest.mark.slow  # kept out of the README's test command's budget; .ci/run runs it
def test_rss_is_flat_over_200_epochs(tmp_path):
    config = RunConfig.create(
        "cartpole", {"n_poles": 1, "horizon": 5}, method="C", epochs=200, n_train=8, n_test=8, batch_size=8
    )
    seen = {}

    def progress(epoch, row):
        if epoch in (50, 100, 150, 200):
            seen[epoch] = rss()

    result = RunFolder(tmp_path / "run").start(config).run(progress)
    assert result.status == "complete" and len(result.metrics) == 200
    growth = seen[200] - seen[50]
    # Keeping each epoch's training state alive (MLP 2x100 + Adam moments, ~130 kB) would add ~20 MB here.
    print({k: v / 2**20 for k, v in seen.items()})
    assert growth < 4 * 2**20, f"RSS grew by {growth / 2**20:.1f} MiB from epoch 50 to 200"
