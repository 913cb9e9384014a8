"""The spool: the compacted `queued` topic, where every accepted message waits until delivered.

Read by the scheduling service (its rebuild and releases) and by `relaystream queues`, so it
lives in the core: `entry` (a waiting message by reference), `index` (a record's index fields
without its content), `snapshot` (the whole spool of some partitions, as of one moment),
`reader` (records fetched back by offset) and `queues` (the per-queue listing operators see).
"""
