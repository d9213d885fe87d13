import signal

import pytest


@pytest.fixture
def ctrl_c_reaches_children():
    """Let the subprocesses a test starts receive Ctrl-C (SIGINT) as in a terminal, also where pytest itself runs
    as a background job, whose SIGINT is ignored and inherited as ignored (which the command respects, as it
    should). A child of a process that handles SIGINT gets the default disposition, and Python's handler."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)
