"""What a service stamps on every log record it writes: its node's id and its bounce class.

One place for both, so the routing, scheduling and delivery records agree (KumoMTA's logger
does the same when it serialises a record).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .bounce_class import UNCONFIGURED, BounceClassifier
from .log_record import LogRecord


@dataclass(frozen=True)
class LogWriter:
    nodeid: str = ""
    classifier: BounceClassifier = UNCONFIGURED

    def stamp(self, record: LogRecord) -> LogRecord:
        """The record with this node's id and the classification of its response (for the
        record types KumoMTA classifies; `Uncategorized` for the others)."""
        return dataclasses.replace(
            record,
            nodeid=self.nodeid,
            bounce_classification=self.classifier.classify_record(record.type, record.response),
        )


# Records of tests and tools that write no log of their own: nil node id, no classifier.
ANONYMOUS = LogWriter()
