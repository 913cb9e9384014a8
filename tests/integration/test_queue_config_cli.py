"""`relaystream queue-config` and `audit config` against a real broker: overrides on the
compacted `queue-config` topic, read back the way the scheduling service reads them."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from relaystream.cli.main import main
from relaystream.core.domain.queue_config import QueueConfig, merge_overrides
from relaystream.core.events.codec import decode
from relaystream.core.kafka.admin import ensure_topics
from relaystream.core.kafka.replay import replay_topic
from relaystream.core.kafka.topics import TopicSettings, declare_topics


def run_cli(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    out, err = capsys.readouterr()
    code = exit_info.value.code
    assert isinstance(code, int)
    return code, out, err


class Cli:
    def __init__(self, capsys: pytest.CaptureFixture[str], bootstrap: str, prefix: str) -> None:
        self.capsys, self.bootstrap, self.prefix = capsys, bootstrap, prefix

    async def __call__(self, *argv: str) -> tuple[int, str, str]:
        command, action, *rest = argv
        full = [command, action, "--bootstrap", self.bootstrap, "--prefix", self.prefix, *rest]
        return await asyncio.to_thread(run_cli, self.capsys, full)


@pytest.fixture
async def cli(kafka_bootstrap: str, topic_prefix: str, capsys: pytest.CaptureFixture[str]) -> Cli:
    topics = declare_topics(TopicSettings.local(topic_prefix))
    await ensure_topics(kafka_bootstrap, [topics.queue_config])
    return Cli(capsys, kafka_bootstrap, topic_prefix)


async def raw_records(bootstrap: str, prefix: str) -> list[tuple[str, dict[str, Any] | None]]:
    """(key, decoded override or None for a tombstone) as the scheduler reads them."""
    topic = declare_topics(TopicSettings.local(prefix)).queue_config.name
    found = []
    async for record in replay_topic(bootstrap, topic):
        assert record.key is not None
        value = None if record.value is None else decode(record.value, "QueueConfigOverride")[1]
        found.append((record.key.decode(), value))
    return found


async def test_set_get_list_rm_round_trip(cli: Cli, kafka_bootstrap: str) -> None:
    code, out, err = await cli(
        "queue-config", "set", "Example.COM", "--retry-interval", "5m",
        "--mx-list", "mx1.example.net", "--mx-list", "mx2=10.0.0.2:2525",
        "--max-message-rate", "100/s", "--reason", "smarthost migration", "--by", "alice",
    )  # fmt: skip
    assert code == 0, err
    config = {
        "retry_interval": "5m",
        "max_message_rate": "100/s",
        "protocol": {
            "smtp": {"mx_list": ["mx1.example.net", {"name": "mx2", "addr": "10.0.0.2:2525"}]}
        },
    }
    assert json.loads(out) == {"target": "example.com", "config": config}

    # Merged into the existing override: the earlier fields stay.
    code, _, _ = await cli("queue-config", "set", "example.com", "--max-age", "2 days")
    assert code == 0
    code, _, _ = await cli(
        "queue-config", "set", "shop@example.com", "--egress-pool", "pool-b", "--by", "bob"
    )
    assert code == 0

    code, out, _ = await cli("queue-config", "get", "example.com")
    shown = json.loads(out)
    assert code == 0 and shown["config"] == {**config, "max_age": "2 days"}
    assert shown["reason"] is None  # the second set gave no reason
    resolved = merge_overrides(QueueConfig(), shown["config"])
    assert resolved.mx_list is not None and len(resolved.mx_list) == 2

    code, out, _ = await cli("queue-config", "list", "--json")
    listed = [json.loads(line) for line in out.splitlines()]
    assert [item["target"] for item in listed] == ["example.com", "shop@example.com"]
    assert listed[1]["updated_by"] == "bob"

    # Records as the scheduler reads them: key = target, value's config = the override JSON.
    records = await raw_records(kafka_bootstrap, cli.prefix)
    assert [key for key, _ in records] == ["example.com", "example.com", "shop@example.com"]
    first = records[0][1]
    assert first is not None and first["target"] == "example.com"
    assert json.loads(first["config"]) == config and first["updated_by"] == "alice"

    # --unset drops a field, --replace starts over.
    code, out, _ = await cli("queue-config", "set", "example.com", "--unset", "mx_list")
    assert "protocol" not in json.loads(out)["config"]
    code, out, _ = await cli("queue-config", "set", "example.com", "--replace", "--max-age", "1d")
    assert json.loads(out)["config"] == {"max_age": "1d"}

    code, out, _ = await cli("queue-config", "rm", "EXAMPLE.com")
    assert code == 0 and "example.com" in out
    assert (await raw_records(kafka_bootstrap, cli.prefix))[-1] == ("example.com", None)
    code, _, err = await cli("queue-config", "get", "example.com")
    assert code == 1 and "no override" in err
    code, out, _ = await cli("queue-config", "list")
    assert out.startswith("shop@example.com ") and len(out.splitlines()) == 1
    code, _, err = await cli("queue-config", "rm", "example.com")
    assert code == 1 and "no override" in err


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--retry-interval", "soon"], "retry_interval"),
        (["--max-message-rate", "fast"], "max_message_rate"),
        (["--mx-list", "mx=not-an-ip"], "not an IP address"),
        (["--mx-list", "bad host!"], "mx_list"),
        ([], "nothing to set"),
    ],
)
async def test_invalid_values_publish_nothing(
    cli: Cli, kafka_bootstrap: str, options: list[str], message: str
) -> None:
    code, out, err = await cli("queue-config", "set", "example.com", *options)
    assert code == 2, out
    assert message in err
    assert await raw_records(kafka_bootstrap, cli.prefix) == []


async def test_missing_topic_is_reported(
    kafka_bootstrap: str, topic_prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = await asyncio.to_thread(
        run_cli,
        capsys,
        ["queue-config", "list", "--bootstrap", kafka_bootstrap, "--prefix", topic_prefix],
    )
    assert code == 1 and "does not exist" in err


async def test_audit_config_shows_the_history(cli: Cli) -> None:
    await cli("queue-config", "set", "example.com", "--max-age", "1d", "--by", "alice",
              "--reason", "short retention")  # fmt: skip
    await cli("queue-config", "set", "example.org", "--egress-pool", "p1", "--by", "bob")
    await cli("queue-config", "set", "example.com", "--max-age", "3d", "--by", "carol")
    await cli("queue-config", "rm", "example.com")

    code, out, _ = await cli("audit", "config")
    lines = out.splitlines()
    assert code == 0
    assert lines[0].startswith("# queue-config history") and "Compaction" in lines[0]
    assert len(lines) == 5
    assert "set     example.com by alice (short retention)" in lines[1]
    assert 'max_age: null -> "1d"' in lines[1]
    assert 'max_age: "1d" -> "3d"' in lines[3] and "by carol" in lines[3]
    assert "removed example.com" in lines[4] and 'max_age: "3d" -> null' in lines[4]

    code, out, _ = await cli("audit", "config", "--target", "EXAMPLE.com", "--format", "jsonl")
    history = [json.loads(line) for line in out.splitlines()]
    assert [h["action"] for h in history] == ["set", "set", "removed"]
    assert history[1]["changed"] == {"max_age": ["1d", "3d"]}
    assert history[2]["config"] is None
