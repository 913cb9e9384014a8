"""What a transform reads of a consumed record: aiokafka's ConsumerRecord, narrowed and typed."""

from __future__ import annotations

from typing import Protocol


class SourceRecord(Protocol):
    """A record as consumed: where it stands, when it was written, its key and value."""

    @property
    def topic(self) -> str: ...

    @property
    def partition(self) -> int: ...

    @property
    def offset(self) -> int: ...

    @property
    def timestamp(self) -> int: ...

    @property
    def key(self) -> bytes | None: ...

    @property
    def value(self) -> bytes | None: ...
