"""`python -m relaystream.scheduling`: the same as `relaystream run scheduling`."""

from __future__ import annotations

import sys

from ..core.runtime.service import run
from .service import SERVICE

if __name__ == "__main__":
    sys.exit(run(SERVICE))
