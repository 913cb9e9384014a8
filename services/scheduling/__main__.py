"""`python -m relaystream.scheduling`: run the scheduling service with the usual settings."""

from __future__ import annotations

import sys

from ..core.runtime import event_loop
from ..core.runtime.logging import configure_logging
from ..core.runtime.settings import load_settings
from .service import run_scheduling


def main() -> None:
    settings = load_settings()
    configure_logging("scheduling", settings.runtime.log_level)
    try:
        event_loop.run(run_scheduling(settings))
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
