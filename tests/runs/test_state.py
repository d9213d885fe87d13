"""`runs.state`: what a run folder's state files say, read without the training stack."""

import pytest


def test_interrupts_wait_for_a_deferred_block_to_end():
    """Ctrl-C inside `interrupts_deferred` lets the block finish, then raises; the handler comes back."""
    import os
    import signal

    from stablebptt.runs.state import interrupts_deferred

    # Python's own handler, whatever the process was given (pytest-xdist's workers ignore SIGINT)
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        done = []
        with pytest.raises(KeyboardInterrupt), interrupts_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            done.append("after the signal")
        assert done == ["after the signal"]
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        with interrupts_deferred():  # no signal, nothing raised
            done.append("quiet")
        assert done[-1] == "quiet"
    finally:
        signal.signal(signal.SIGINT, inherited)

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # an ignored signal stays ignored: the block runs on, nothing raised
    try:
        with interrupts_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            done.append("ignored")
        assert done[-1] == "ignored" and signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, inherited)


def test_a_path_that_is_not_a_run_folder_is_told_what_it_is(tmp_path):
    """`read_record` (behind resume, animate, diagnose RUN_DIR) names what the path is instead: nothing, a file,
    a folder of runs (naming one of them), another folder."""
    from stablebptt.core.checks import BadInput
    from stablebptt.runs.state import read_record

    (tmp_path / "cmp" / "R-seed1").mkdir(parents=True)
    (tmp_path / "cmp" / "R-seed1" / "config.json").write_text("{}")
    (tmp_path / "cmp" / "C-seed1").mkdir()
    (tmp_path / "cmp" / "C-seed1" / "config.json").write_text("{}")
    (tmp_path / "mine").mkdir()
    (tmp_path / "file").write_text("x")
    cases = {
        "nothing": "nothing does not exist$",
        "file": "file is a file, not a run folder$",
        "mine": r"mine is not a run folder \(it has no config.json\)$",
        "cmp": r"cmp holds 2 runs \(a comparison or a sweep\), not one: give one of its run folders, e.g. .*C-seed1$",
    }
    for name, message in cases.items():
        with pytest.raises(BadInput, match=message):
            read_record(tmp_path / name)
