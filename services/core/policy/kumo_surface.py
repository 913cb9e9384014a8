"""What a KumoMTA policy may name here: the events `kumo.on` takes, and the KumoMTA
configuration calls that mean nothing on Kafka. (The modules `require` gives are listed in
sandbox.lua, REQUIRABLE, beside the tables they are.)

The Lua side (sandbox.lua) asks `event_registration` about each `kumo.on` and is handed the
configuration call names at start-up; this module is the one list of each.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

# Events relaystream runs. `pre_init` and `init` run once, when the policy loads.
RUN_EVENTS: frozenset[str] = frozenset(
    {
        "pre_init",
        "init",
        "smtp_server_message_received",
        "http_message_generated",
        "get_queue_config",
        "get_egress_path_config",
        "get_egress_source",
        "get_egress_pool",
        # Run by ingest during the SMTP dialogue.
        "smtp_server_connection_accepted",
        "smtp_server_ehlo",
        "smtp_server_mail_from",
        "smtp_server_rcpt_to",
        "smtp_server_auth_plain",
        "get_listener_domain",
    }
)

# KumoMTA's other events (its docs/reference/events/, and validate_config and
# http_server_validate_auth_bearer from its source): known, not run here yet (issue 18).
NOT_RUN_EVENTS: frozenset[str] = frozenset(
    {
        "get_acl_definition",
        "http_server_validate_auth_basic",
        "http_server_validate_auth_bearer",
        "proxy_init",
        "proxy_server_auth_rfc1929",
        "rebind_message",
        "requeue_message",
        "should_enqueue_log_record",
        "shutdown_logging",
        "smtp_client_rewrite_delivery_status",
        "smtp_server_data",
        "smtp_server_get_dynamic_parameters",
        "smtp_server_message_deferred_inject",
        "smtp_server_rewrite_response",
        "smtp_server_split_transaction",
        "spool_message_enumerated",
        "throttle_insert_ready_queue",
        "tsa_init",
        "tsa_load_shaping_data",
        "validate_config",
        "xfer_message_received",
    }
)

KUMOMTA_EVENTS = RUN_EVENTS | NOT_RUN_EVENTS

# A name this close to a KumoMTA event (difflib ratio, any case) is taken for a misspelling.
_MISSPELLING_CUTOFF = 0.8

# KumoMTA configuration calls (made in `init`) that have no meaning in relaystream, with
# what relaystream does instead. Each is accepted and logged once per policy load.
CONFIGURATION_ELSEWHERE: Mapping[str, str] = {
    "define_spool": "Kafka is the spool (the queued topic); no spool directory is used",
    "configure_local_logs": "the log topic is the log; no local log files are written",
    "start_esmtp_listener": (
        "the SMTP listener is ingest's, configured by its settings (RELAYSTREAM_INGEST_SMTP_BIND,"
        " _SMTP_PORT, _RELAY_NETWORKS, _TLS_CERT, ...)"
    ),
    "start_http_listener": (
        "the HTTP listener is ingest's, configured by its settings (RELAYSTREAM_INGEST_HTTP_BIND,"
        " _HTTP_PORT, _API_TOKENS, ...)"
    ),
    "configure_redis_throttles": (
        "no Redis: the scheduling service that owns a queue's partition keeps its throttles"
    ),
    "configure_accounting_db_path": "accounting comes from the log topic, not a local database",
    "set_config_monitor_globs": "the policy is read when a service starts; restart to reload",
    "eval_config_monitor_globs": "the policy is read when a service starts; restart to reload",
    "bump_config_epoch": "the policy is read when a service starts; restart to reload",
    "set_diagnostic_log_filter": (
        "the log level is the service's setting RELAYSTREAM_LOG_LEVEL; logs are JSON on stderr"
    ),
    "set_memory_hard_limit": "memory is bounded by the container's limit and each policy call's",
    "set_memory_soft_limit": "memory is bounded by the container's limit and each policy call's",
    "set_memory_low_thresh": "memory is bounded by the container's limit and each policy call's",
    "set_lruttl_cache_capacity": "relaystream's caches have fixed sizes",
    "set_max_lua_context_age": "each service keeps one Lua state per policy for its lifetime",
    "set_max_lua_context_use_count": "each service keeps one Lua state per policy for its lifetime",
    "set_max_spare_lua_contexts": "each service keeps one Lua state per policy for its lifetime",
    "set_lua_gc_on_put": "each service keeps one Lua state per policy for its lifetime",
    "suspend_delivery_when_spool_unhealthy": "Kafka is the spool; its health is Kafka's",
    "set_httpinject_recipient_rate_limit": (
        "ingest's HTTP API has no per-recipient rate limit; scheduling throttles each queue"
    ),
    "dns.set_mx_timeout": "delivery's MX lookups take RELAYSTREAM_DELIVERY_* settings",
    "dns.set_mx_concurrency_limit": "delivery's MX lookups take RELAYSTREAM_DELIVERY_* settings",
    "dns.set_mx_negative_cache_ttl": (
        "delivery caches a failed MX lookup for five minutes, as KumoMTA's default"
    ),
    "dns.set_mta_sts_enabled": "relaystream's delivery does not apply MTA-STS",
    "dns.configure_test_mta_sts": "relaystream's delivery does not apply MTA-STS",
    "aaa.configure_acct_log": "accounting comes from the log topic, not a local log file",
    "aaa.set_acl_cache_ttl": "relaystream applies no KumoMTA ACLs (kumo.aaa is refused)",
    "aaa.set_check_cache_ttl": "relaystream applies no KumoMTA ACLs (kumo.aaa is refused)",
    **{
        f"set_{pool}_threads": "relaystream's services are asyncio processes; scale them by "
        "running more instances (Kafka partitions spread the work)"
        for pool in (
            "httpinject",
            "logging",
            "qmaint",
            "ready_qmaint",
            "readyq",
            "smtpsrv",
            "spoolin",
        )
    },
}

# KumoMTA namespaces and functions refused here, with why: calling one is an error that names
# it, at the policy's line. A namespace's name refuses everything under it.
REFUSED: Mapping[str, str] = {
    "http": "no outbound HTTP from a policy: it runs inside a message's processing, under a "
    "deadline; send events to a webhook from the log topic instead",
    "amqp": "no AMQP client in a policy: consume the log topic instead",
    "nats": "no NATS client in a policy: consume the log topic instead",
    "kafka": "no Kafka client in a policy: relaystream's topics carry every event already",
    "jsonl": "no local log files to tail: the log topic is the log",
    "fs": "a policy reads only its data files (kumo.serde.*_load, kumo.toml_load, ...)",
    "glob": "a policy reads only its data files (kumo.serde.*_load, kumo.toml_load, ...)",
    "uncached_glob": "a policy reads only its data files (kumo.serde.*_load, kumo.toml_load, ...)",
    "read_dir": "a policy reads only its data files (kumo.serde.*_load, kumo.toml_load, ...)",
    "secrets": "no secret stores (vault) from a policy: pass secrets as files or environment",
    "crypto": "no AES or AWS signing in policies: relaystream ships no kumo.crypto",
    "spf": "no SPF checks in relaystream policies yet",
    "xfer": "no message transfer between nodes: every node reads the same Kafka topics",
    "aaa": "no KumoMTA access control lists: ingest's settings (relay networks, API tokens) "
    "decide who may submit",
    "api": "no kumo.api.inject: submit over SMTP, HTTP or the inbound Kafka topic",
    "mpsc": "no in-process queues between policy tasks: relaystream runs no policy tasks",
    "counter_series": "no in-process counters: metrics come from the services' /metrics",
    "spawn_task": "relaystream runs no background policy tasks: a policy runs only inside an "
    "event, under its deadline; run long work as a separate consumer of the log topic",
    "inject_message": "a policy cannot inject mail: submit over SMTP, HTTP or Kafka",
    "file_type": "no file-type database in relaystream policies (media types by extension "
    "or content)",
    "mimepart": "no MIME part building in relaystream policies (msg:parse_mime is refused too)",
    "string.normalize_smtp_response": "its tokenizer (dictionary words, hashes, ...) is "
    "KumoMTA's own; relaystream does not imitate it",
}

# Modules a KumoMTA policy may `require` that relaystream refuses, with why: the error names
# the module and the reason, at the require line.
REFUSED_MODULES: Mapping[str, str] = {
    "tsa": "it is the policy side of KumoMTA's traffic shaping automation daemon (tsa-daemon), "
    "a separate service; relaystream runs no TSA daemon",
    "proxy": "it is the policy side of KumoMTA's SOCKS5 proxy server (kumo-proxy), a separate "
    "program; relaystream has no proxy server and its delivery connects through no proxy",
    "sqlite": "no database from a policy: it runs inside a message's processing, under a "
    "deadline; put the data in a file the policy loads (kumo.serde.*_load, kumo.toml_load)",
    "redis": "no Redis from a policy: it runs inside a message's processing, under a deadline; "
    "put the data in a file the policy loads; scheduling does the throttling",
    "policy-extras.hornet": "Hornetsecurity's module, not one KumoMTA ships: it calls a "
    "scanning service over HTTP from the policy, and a policy makes no network calls here",
}


class EventKind(Enum):
    RUN = "run"  # relaystream runs it
    NOT_RUN = "not run"  # a KumoMTA event relaystream does not run yet
    USER_NAMED = "user-named"  # KumoMTA lets a policy name its own (kumo.spawn_task, log hooks)
    MISSPELT = "misspelt"  # too close to a KumoMTA event to be anything but a typo


@dataclass(frozen=True, slots=True)
class EventRegistration:
    kind: EventKind
    # For NOT_RUN and USER_NAMED the warning to log, for MISSPELT the load error.
    text: str = ""


def event_registration(name: str) -> EventRegistration:
    """What `kumo.on(name, ...)` means here. KumoMTA itself accepts any name at `kumo.on`
    (user-named events are fired by `kumo.spawn_task` and log hooks, decided at run time), so
    only a name that is nearly a KumoMTA event's is refused: that one is a typo."""
    if name in RUN_EVENTS:
        return EventRegistration(EventKind.RUN)
    if name in NOT_RUN_EVENTS:
        return EventRegistration(
            EventKind.NOT_RUN,
            f"kumo.on('{name}'): relaystream does not run the KumoMTA event '{name}' yet "
            "(issue 18); its handler is registered and never called",
        )
    close = difflib.get_close_matches(
        name.lower(), sorted(KUMOMTA_EVENTS), n=1, cutoff=_MISSPELLING_CUTOFF
    )
    if close:
        return EventRegistration(
            EventKind.MISSPELT,
            f"kumo.on('{name}'): no such KumoMTA event; did you mean '{close[0]}'?",
        )
    return EventRegistration(
        EventKind.USER_NAMED,
        f"kumo.on('{name}'): '{name}' is not a KumoMTA event; taken as a user-named event, "
        "which KumoMTA fires from kumo.spawn_task (refused in relaystream: no background "
        "policy tasks) or from a log hook (kumo.configure_log_hook); relaystream never calls "
        "this handler otherwise",
    )
