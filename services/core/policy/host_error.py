"""The error a host callback raises for the policy to see (host.py turns it into a Lua error
with this text). On its own so that what the callbacks use (message_state.py) can raise it."""

from __future__ import annotations


class HostError(Exception):
    """A callback's failure, shown to the policy as a Lua error with this text."""
