"""`python -m relaystream.routing [--config FILE]`: the same as `relaystream run routing`."""

import sys

from ..cli.main import main

main(["run", "routing", *sys.argv[1:]])
