"""relaystream: an event-sourced MTA."""
