"""`kafka_compression`: the codec every producer of a service process writes its batches with."""

from collections.abc import Iterator

import pytest

from relaystream.core.kafka import producer


@pytest.fixture(autouse=True)
def restore_the_default() -> Iterator[None]:
    before = producer.compression_type()
    yield
    producer.use_compression(before or "none")


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_a_codec_chosen_is_what_producers_are_given(codec: str) -> None:
    producer.use_compression(codec)
    assert producer.compression_type() == codec


def test_none_means_no_codec() -> None:
    producer.use_compression("lz4")
    producer.use_compression("none")
    assert producer.compression_type() is None


def test_an_unknown_codec_is_refused_and_changes_nothing() -> None:
    producer.use_compression("zstd")
    with pytest.raises(producer.CompressionUnavailable, match="kafka_compression: unknown codec"):
        producer.use_compression("brotli")
    assert producer.compression_type() == "zstd"


def test_a_codec_without_its_package_is_an_error_that_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As on an installation without cramjam: aiokafka's own check answers False.
    monkeypatch.setitem(producer._AVAILABLE, "lz4", lambda: False)
    with pytest.raises(producer.CompressionUnavailable, match=r"pip install cramjam"):
        producer.use_compression("lz4")
