"""How a command ends when interrupted (`stablebptt.cli.guard`): an interrupt raised into the main thread is
remembered, so that one Python drops (inside a garbage-collector callback, as JAX registers one) is raised again
at the next epoch; and at every moment of a command's life Ctrl-C and SIGTERM end it with one line and its exit
code, never a hang, a traceback or a crash."""

from __future__ import annotations

import gc
import json
import signal
import subprocess
import sys
import threading
import time

import pytest

from stablebptt.cli.guard import interrupts_raised, raise_pending
from stablebptt.runs.state import Terminated


def _lost_in_gc_callback(signum: int) -> None:
    """Deliver `signum` to this process from inside a garbage-collector callback, where Python drops the
    exception its handler raises ("Exception ignored in ...")."""
    fired = []

    def callback(phase: str, info: dict) -> None:
        if not fired:
            fired.append(phase)
            signal.raise_signal(signum)
            for _ in range(100):  # the handler runs at the next bytecode boundary, still inside this callback
                pass

    gc.callbacks.append(callback)
    try:
        gc.collect()
    except KeyboardInterrupt:
        pass  # not lost after all (the handler ran after the callback): raise_pending must raise it still
    finally:
        gc.callbacks.remove(callback)
    assert fired


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize(("signum", "error"), [(signal.SIGINT, KeyboardInterrupt), (signal.SIGTERM, Terminated)])
def test_an_interrupt_lost_in_a_gc_callback_is_raised_again(signum, error):
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler and signum == signal.SIGINT:
        pytest.skip("Ctrl-C is handled elsewhere in this process (a test runner's worker)")
    with interrupts_raised():
        raise_pending()  # nothing came yet: nothing raised
        _lost_in_gc_callback(signum)
        with pytest.raises(error):
            raise_pending()
    raise_pending()  # outside, forgotten


def test_the_handlers_come_back_and_nesting_changes_nothing():
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    with interrupts_raised():
        inside = signal.getsignal(signal.SIGTERM)
        assert inside is not before[0]
        with interrupts_raised():
            assert signal.getsignal(signal.SIGTERM) is inside
        assert signal.getsignal(signal.SIGTERM) is inside  # the inner one left the outer's handlers in place
        with pytest.raises(Terminated):
            signal.raise_signal(signal.SIGTERM)
            time.sleep(0.01)  # the handler runs here at the latest
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before


def test_outside_the_main_thread_nothing_changes():
    seen = []

    def body() -> None:
        with interrupts_raised():
            seen.append(signal.getsignal(signal.SIGTERM))

    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    assert seen == [signal.getsignal(signal.SIGTERM)]


# Moments (seconds after the start) to send the signal: importing JAX, building the task, compiling, training.
MOMENTS = [0.2, 0.6, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 6.0]


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupt_at_any_moment_ends_the_command_with_one_line(tmp_path, sig, ctrl_c_reaches_children):
    for i, moment in enumerate(MOMENTS):
        out = tmp_path / f"run{i}"
        args = ["train", "cartpole", "--poles", "1", "--horizon", "10", "--epochs", "100000"]
        proc = subprocess.Popen(
            [sys.executable, "-m", "stablebptt", *args, "--n-train", "16", "--n-test", "16", "--out", str(out)],
            cwd=tmp_path,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(moment)
        proc.send_signal(sig)
        try:
            _, err = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            pytest.fail(f"signal {sig!r} at {moment} s: still running 120 s later")
        where = f"signal {sig!r} at {moment} s: {err}"
        assert proc.returncode == 128 + sig, where  # not -11 (a crash in the teardown), not -2 (no handler)
        lines = [line for line in err.splitlines() if line.strip() and "━" not in line]
        assert len(lines) == 1 and "Traceback" not in err, where
        if (out / "status.json").exists():
            assert json.loads((out / "status.json").read_text())["status"] == "interrupted", where
            assert "stablebptt resume" in lines[0], where
        else:  # stopped before JAX was imported or before the run folder was made
            assert "nothing was written" in lines[0] and "resume" not in lines[0], where
        assert not (out / ".lock").exists(), where
