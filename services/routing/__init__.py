"""The routing service: MessageAccepted -> policy -> scheduled queue -> decision, spool, log.

For each record of `accepted` the reception policy runs, the scheduled queue name is computed
and the service produces a RoutingDecision on `decisions`, a QueuedMessage on `queued` (on the
queue's partition; not for a rejected or discarded message) and a LogRecord on `log`, all keyed
by the message id. Undecodable or unroutable records go to `dead-letter`; a failing policy
rejects the message (`451 4.3.0`) and dead-letters a copy for a replay (decision.py).

Exactly once between `accepted` and decisions/queued/log/dead-letter: one consumer in group
`<prefix>routing` reads `accepted` with read_committed (ingest writes it in transactions; an
aborted reception is never routed), and each batch is routed in one Kafka transaction that
holds its output records and the batch's consumed offsets (core/kafka/transactional_loop.py).
A crash before the commit (even SIGKILL) aborts everything of the batch, outputs and offsets
together, and the batch is read again; after the commit both are visible. Readers of the
output topics must use read_committed to see only committed records.

A record that appears twice on `accepted` (the same id produced twice) is two inputs and is
routed twice, to identical `queued` records (same key and partition): de-duplicating ids is
ingest's job.

Shutdown (SIGTERM): the batch in progress finishes its transaction, then the service stops.
"""
