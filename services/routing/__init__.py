"""The routing service: MessageAccepted -> policy -> scheduled queue -> decision, spool, log."""
