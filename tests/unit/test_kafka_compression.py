"""`kafka_compression`: the codec every producer of a service process writes its batches with."""

from collections.abc import Iterator

import pytest

from relaystream.core.kafka import producer
from relaystream.core.runtime import service
from relaystream.core.runtime.service import ServiceRuntime, ServiceSpec


@pytest.fixture(autouse=True)
def restore_the_default() -> Iterator[None]:
    before = producer.compression_type()
    yield
    producer.use_compression(before or "none")


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_a_codec_chosen_is_what_producers_are_given(
    codec: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As on an installation with cramjam (not a dependency: snappy, lz4 and zstd need it).
    monkeypatch.setitem(producer._AVAILABLE, codec, lambda: True)
    producer.use_compression(codec)
    assert producer.compression_type() == codec


def test_none_means_no_codec() -> None:
    producer.use_compression("gzip")
    producer.use_compression("none")
    assert producer.compression_type() is None


def test_an_unknown_codec_is_refused_and_changes_nothing() -> None:
    producer.use_compression("gzip")
    with pytest.raises(producer.CompressionUnavailable, match="kafka_compression: unknown codec"):
        producer.use_compression("brotli")
    assert producer.compression_type() == "gzip"


def test_a_codec_without_its_package_is_an_error_that_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As on an installation without cramjam: aiokafka's own check answers False.
    monkeypatch.setitem(producer._AVAILABLE, "lz4", lambda: False)
    with pytest.raises(
        producer.CompressionUnavailable, match=r"pip install 'relaystream\[compression\]'"
    ):
        producer.use_compression("lz4")


def test_a_service_with_an_unusable_codec_exits_2_before_it_starts(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    started: list[ServiceRuntime] = []

    async def main(runtime: ServiceRuntime) -> None:
        started.append(runtime)

    monkeypatch.setenv("RELAYSTREAM_KAFKA_COMPRESSION", "zstd")
    monkeypatch.delenv("RELAYSTREAM_CONFIG", raising=False)
    monkeypatch.setitem(producer._AVAILABLE, "zstd", lambda: False)

    assert service.run(ServiceSpec(name="probe", main=main)) == service.EXIT_BAD_SETTINGS
    assert started == []
    assert "kafka_compression zstd needs the Python package cramjam" in capsys.readouterr().err
