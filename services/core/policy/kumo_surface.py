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
    }
)

# KumoMTA's other events (its docs/reference/events/, and validate_config and
# http_server_validate_auth_bearer from its source): known, not run here yet (issue 18).
NOT_RUN_EVENTS: frozenset[str] = frozenset(
    {
        "get_acl_definition",
        "get_listener_domain",
        "http_server_validate_auth_basic",
        "http_server_validate_auth_bearer",
        "proxy_init",
        "proxy_server_auth_rfc1929",
        "rebind_message",
        "requeue_message",
        "should_enqueue_log_record",
        "shutdown_logging",
        "smtp_client_rewrite_delivery_status",
        "smtp_server_auth_plain",
        "smtp_server_connection_accepted",
        "smtp_server_data",
        "smtp_server_ehlo",
        "smtp_server_get_dynamic_parameters",
        "smtp_server_mail_from",
        "smtp_server_message_deferred_inject",
        "smtp_server_rcpt_to",
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
        f"kumo.on('{name}'): '{name}' is not a KumoMTA event; taken as a user-named event "
        "(kumo.spawn_task, log hooks), which relaystream does not run yet (issue 18); "
        "its handler is never called",
    )
