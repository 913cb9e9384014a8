"""`python -m relaystream`: the same as the `relaystream` command."""

from .cli.main import main

main()
