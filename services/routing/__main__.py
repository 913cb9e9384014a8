"""`python -m relaystream.routing`: the same as `relaystream run routing`."""

from __future__ import annotations

import sys

from ..core.runtime.service import run
from .service import SERVICE

if __name__ == "__main__":
    sys.exit(run(SERVICE))
