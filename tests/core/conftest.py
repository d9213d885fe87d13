"""Fixtures of the core tests."""

from __future__ import annotations

import jax
import pytest


@pytest.fixture
def problem(x64, key):
    """Parameters of `systems.toy_controller` (hidden width 5) and a batch of 4 initial states, in float64."""
    k1, k2, k3, k4 = jax.random.split(key, 4)
    params = {
        "w1": jax.random.normal(k1, (2, 5)),
        "b1": jax.random.normal(k2, (5,)) * 0.1,
        "w2": jax.random.normal(k3, (5, 1)),
    }
    return params, jax.random.normal(k4, (4, 2))
