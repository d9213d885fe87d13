"""The memory estimate of `training.budget`: from shapes only (nothing compiled, well under a second), linear in
the horizon and the batch, smaller with rematerialisation, below what XLA allocates; runs that cannot fit are
refused in one line, runs that can pass; notes on options that have no effect.

Calibration (XLA's ``memory_analysis`` of the compiled epoch, temporaries, on the CPU; cartpole, 2 poles,
method C, batch 8, 256 training and test states; per step of the horizon):

    remat    estimate    XLA epoch (H = 100 / 1000 / 10000)
    none     14.3 kB     39.0 / 38.2 / 38.1 kB
    sqrt      6.2 kB     18.6 / 18.4 / 18.4 kB
    states    6.2 kB     18.6 / 18.4 / 18.4 kB

(``--horizon 10000000`` asked XLA for 381 GB: 38.1 kB per step.) `test_the_estimate_is_below_what_xla_allocates`
checks one of them.
"""

from __future__ import annotations

import time

import jax
import pytest

from stablebptt.cli.guard import shown
from stablebptt.core.checks import BadInput
from stablebptt.tasks import CartPole, make_task
from stablebptt.training import budget
from stablebptt.training.settings import TrainSettings

GB = 10**9


def update_bytes(horizon: int, **settings) -> int:
    return budget.estimate(make_task("cartpole", horizon=horizon), TrainSettings(**settings)).update


def test_the_update_grows_linearly_with_the_horizon_and_the_batch():
    one = update_bytes(1000)
    assert update_bytes(2000) == 2 * one and update_bytes(10**7) == 10**4 * one
    assert update_bytes(1000, batch_size=16) == pytest.approx(2 * one, rel=0.01)  # a few scalars do not scale
    assert update_bytes(1000, batch_size=64) == pytest.approx(8 * one, rel=0.01)


def test_rematerialisation_lowers_the_estimate():
    none, sqrt, states = (update_bytes(10**6, remat=r) for r in (None, "sqrt", "states"))
    assert states < sqrt < none / 20
    assert update_bytes(10**6, remat=1000) == pytest.approx(sqrt, rel=0.01)  # sqrt(10**6) = 1000 steps
    assert update_bytes(100, remat=1000) == update_bytes(100)  # one segment: the whole rollout


def test_the_parts_of_the_estimate():
    task = make_task("cartpole", horizon=100)  # states (batch, 3, 2), force (batch,), float32
    size = budget.sizes(task, TrainSettings(batch_size=8, n_train=32, n_test=16))
    assert (size.state, size.control, size.eval_state) == (8 * 24, 8 * 4, 32 * 24)
    assert 8 * (6 + 4 * 100) * 4 <= size.residual < 20_000  # the network's activations, no weights
    assert size.fixed > 3 * 4 * sum(x.size for x in jax.tree.leaves(task.init_controller(jax.random.PRNGKey(0))))
    wide = budget.sizes(task, TrainSettings(batch_size=8, n_train=32, n_test=16), x64=True)
    assert (wide.state, wide.residual) == (2 * size.state, pytest.approx(2 * size.residual, rel=0.02))


def test_the_estimate_is_below_what_xla_allocates():
    """Never refuse a run that fits: the estimate of an epoch is below XLA's own count for it."""
    from stablebptt.training import Trainer

    task = make_task("cartpole", n_poles=1, horizon=200)
    for settings in (TrainSettings(n_train=16, n_test=16), TrainSettings(n_train=64, n_test=16, remat="sqrt")):
        trainer = Trainer(task, settings)
        memory = jax.jit(trainer._epoch).lower(trainer.initial, trainer.data).compile().memory_analysis()
        if memory is None:
            pytest.skip("no memory analysis on this backend")
        estimate = budget.estimate(task, settings).total
        assert 0.2 * memory.temp_size_in_bytes < estimate < memory.temp_size_in_bytes + memory.argument_size_in_bytes


def test_a_run_that_cannot_fit_is_refused_in_one_line_suggesting_remat_sqrt():
    task = make_task("cartpole", horizon=10**7)  # 143 GB at least without remat, 61 GB with remat sqrt
    with pytest.raises(BadInput, match="100 GB of test memory") as error:
        budget.check_memory(task, TrainSettings(), limit=100 * GB, where="test memory")
    message = str(error.value)
    assert "\n" not in message and "remat='sqrt'" in message and "100 GB of test memory" in message
    assert "--remat sqrt" in shown(error.value) and "--batch-size" in shown(error.value)  # the command line's words
    assert "143 GB" in message
    budget.check_memory(task, TrainSettings(remat="sqrt"), limit=100 * GB)  # fits: nothing raised


def test_with_remat_already_the_refusal_suggests_a_smaller_horizon():
    task = make_task("cartpole", horizon=10**7)
    with pytest.raises(
        BadInput, match=r"smaller horizon \(at most about 4,000,000\)"
    ) as error:  # the loss alone: 61 GB
        budget.check_memory(task, TrainSettings(remat="sqrt"), limit=25 * GB)
    message = str(error.value)
    assert "smaller horizon (at most about 4,000,000)" in message and "n_train/n_test" in message
    assert "smaller --horizon (at most about 4,000,000) or --n-train/--n-test" in shown(error.value)
    budget.check_memory(task, TrainSettings(remat="sqrt", n_train=8, n_test=8), limit=25 * GB)


def test_the_default_limit_is_the_machine_memory():
    limit, where = budget.memory_limit()
    assert 10**8 < limit < 2**50 and "memory" in where
    budget.check_memory(make_task("cartpole"), TrainSettings())  # the defaults fit anywhere
    with pytest.raises(BadInput, match="remat='sqrt'"):
        budget.check_memory(make_task("cartpole", horizon=10**9), TrainSettings())  # 14 TB


def test_the_check_is_fast_and_compiles_nothing():
    compiles = []

    def listener(event, duration, **kwargs):
        if "backend_compile" in event:
            compiles.append(event)

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        task = make_task("cartpole", n_poles=3, horizon=12345)  # shapes never traced before in this process
        begin = time.perf_counter()
        budget.check_memory(task, TrainSettings(batch_size=7, remat="sqrt"))
        assert time.perf_counter() - begin < 1.0
        assert compiles == []
        jax.jit(lambda x: x * time.time())(1.0)  # the listener sees a compilation (a new constant: no cache hit)
        assert compiles
    finally:
        from jax._src import monitoring

        unregister = getattr(monitoring, "unregister_event_duration_listener", None)
        if unregister is not None:
            unregister(listener)
        else:  # older JAX
            monitoring._unregister_event_duration_listener_by_callback(listener)


class BadSampler(CartPole):
    def sample(self, key, n):
        raise RuntimeError("broken")


def test_a_task_that_fails_when_traced_is_left_to_training():
    budget.check_memory(BadSampler(horizon=10**9), TrainSettings())  # training reports the error, not the check


def test_notes_on_options_without_effect():
    task = make_task("cartpole", horizon=100)
    assert budget.notes(task, TrainSettings()) == []
    assert budget.notes(task, TrainSettings(truncation=50, remat=10)) == []
    assert budget.notes(task, TrainSettings(remat="sqrt")) == []
    (truncation,) = budget.notes(task, TrainSettings(truncation=500))
    assert truncation.startswith("truncation 500 has no effect at horizon 100") and "\n" not in truncation
    both = budget.notes(task, TrainSettings(truncation=100, remat=1000))
    assert len(both) == 2 and both[1].startswith("remat 1000 has no effect at horizon 100")
    assert "no memory is saved" in both[1]
    (one,) = budget.notes(make_task("cartpole", horizon=1), TrainSettings(remat="states"))
    assert one.startswith("remat states (segments of 1 step) has no effect at horizon 1")
