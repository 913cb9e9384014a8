"""Child processes of a test run end with it, even when the run is killed.

`ends_with_test_run` is a `preexec_fn` for subprocess.Popen: Linux's PR_SET_PDEATHSIG asks the
kernel to send the child SIGTERM when the thread that started it dies. A run killed with
SIGKILL (a CI timeout, a second Ctrl-C) then leaves no service behind to hold ports and CPU.
Start children from the main thread (the event loop's), which lives as long as the run: a
worker thread's exit would stop them early. Not for dnsmasq: the kernel forgets the request
when a process changes its capabilities, which dnsmasq does once it has bound its port.
"""

from __future__ import annotations

import ctypes
import signal

_PR_SET_PDEATHSIG = 1


def ends_with_test_run() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
