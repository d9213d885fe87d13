"""`runs.state`: what a run folder's state files say, read without the training stack."""

import pytest


def test_interrupts_wait_for_a_deferred_block_to_end():
    """Ctrl-C inside `interrupts_deferred` lets the block finish, then raises; the handler comes back."""
    import os
    import signal

    from stablebptt.runs.state import interrupts_deferred

    before = signal.getsignal(signal.SIGINT)
    done = []
    with pytest.raises(KeyboardInterrupt), interrupts_deferred():
        os.kill(os.getpid(), signal.SIGINT)
        done.append("after the signal")
    assert done == ["after the signal"]
    assert signal.getsignal(signal.SIGINT) is before
    with interrupts_deferred():  # no signal, nothing raised
        done.append("quiet")
    assert done[-1] == "quiet"
