"""The scheduling service: owns the scheduled queues of its `queued` partitions.

Design (see scheduler.py for the loop):

- State is rebuilt, never stored, one partition at a time (`partition.PartitionScheduler`): a
  newly assigned `queued` partition is read from the beginning to its end offset (last record
  per id wins, tombstones remove), then the recent tail of `attempts` (the in-flight lease,
  default 15 minutes) marks releases without an outcome as in flight, so a restart does not
  release them again before the lease runs out. Partitions kept across a rebalance keep their
  state and are not read again (rebalance.py); new ones are built in the background while the
  kept ones keep releasing. Ready (/readyz) once every assigned partition is built. Due times
  live in the events, so timers survive.
- Memory stays bounded when millions wait: no content is held. Each waiting message is a compact
  `core.spool.entry.SpoolEntry` (id, queue, due_at, attempts, created_at, queued partition and
  offset of its latest record) plus a (due_at, id) heap item in its queue's heap. Measured with
  bench/scheduler_rebuild_bench.py: about 370 bytes a message by tracemalloc, 520-550 bytes of
  process RSS (1M messages: ~520 MiB, rebuilt in ~30 s on a 2-core machine). Rebuild decodes only
  the index fields (`core.spool.index`, a hand-walked Avro prefix that skips content by length).
- When messages fall due their records are fetched back from `queued` by offset in batches
  (`core.spool.reader`: a dedicated consumer with manual assignment and seeks, no group), turned
  into DeliveryRequests with the resolved queue config as JSON and produced to `attempts` on the
  queue's partition, at most `max_message_rate` per queue (token buckets in `throttle`).
- Queue config = the policy's get_queue_config merged field by field with `queue-config`
  overrides (domain, then exact queue name), read in full by every instance and followed live.
- Outcomes are applied once per (message id, attempt): DELIVERED/BOUNCE tombstone the message;
  TRANSIENT_FAILURE requeues it with backoff (core.domain.retry) or expires it (tombstone +
  Expiration log record, 551 5.4.7). `outcomes` offsets are committed only after those writes
  are acknowledged; `queued` offsets are never committed (it is the spool).

Declared in `service.SERVICE`; run by `relaystream run scheduling` (or
`python -m relaystream.scheduling`).
"""
