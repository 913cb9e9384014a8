"""`relaystream` commands over the scheduling admin HTTP API, named as KumoMTA's `kcli`:

    bounce-list, bounce-cancel ID, suspend-list, suspend-cancel ID,
    suspend-ready-q NAME --reason R, suspend-ready-q-list, suspend-ready-q-cancel ID,
    inspect-sched-q QUEUE, inspect MESSAGE_ID, inspect-ready-q QUEUE, ready-q-states,
    resolve-egress-path DOMAIN, set-log-filter FILTER, bump-config-epoch, machine-info

Each takes `--endpoint` (default: the settings' admin API address), `--token` or
`--basic-user USER:PASSWORD` (default: the settings' first token; none is needed from a trusted
host such as loopback) and `--json` (the API's JSON as it is) instead of a table. An instance
answers for its own partitions: with several scheduling instances, ask each (the ready queues
are every delivery instance's, from the ready-queues topic). Creating rules
(`relaystream suspend`, `bounce`, `rebind`) publishes on Kafka directly; `bounce --wait` and
`rebind --wait` then follow their progress here.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

from ..core.runtime.settings import load_settings
from .common import table

EXIT_FAILED = 1


class AdminApiError(Exception):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"HTTP {status}: {text.strip()}")
        self.status = status


@dataclass(frozen=True)
class AdminClient:
    endpoint: str
    authorization: str | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> AdminClient:
        own = load_settings().scheduling
        endpoint = args.endpoint
        if endpoint is None:
            host = own.admin_api_bind
            host = "127.0.0.1" if host in ("0.0.0.0", "") else host
            host = f"[{host}]" if ":" in host else host
            endpoint = f"http://{host}:{own.admin_api_port}"
        authorization = None
        if args.basic_user:
            authorization = "Basic " + base64.b64encode(args.basic_user.encode()).decode()
        elif args.token or own.admin_api_tokens:
            authorization = f"Bearer {args.token or own.admin_api_tokens[0]}"
        return cls(endpoint.rstrip("/"), authorization)

    def call(self, method: str, path: str, body: Any = None, **query: Any) -> Any:
        """The answer's JSON (or text); raises AdminApiError for a non-2xx status."""
        given = {k: v for k, v in query.items() if v is not None}
        url = self.endpoint + path + (f"?{urllib.parse.urlencode(given)}" if given else "")
        headers = {"Accept": "application/json"}
        if self.authorization:
            headers["Authorization"] = self.authorization
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                text = response.read().decode()
                kind = response.headers.get_content_type()
        except urllib.error.HTTPError as error:
            raise AdminApiError(error.code, error.read().decode(errors="replace")) from None
        return json.loads(text) if kind == "application/json" else text


def add_client_options(parser: argparse.ArgumentParser, *, json_option: bool = True) -> None:
    parser.add_argument("--endpoint", help="admin API URL (default: from the settings)")
    parser.add_argument("--token", help="bearer token (default: the settings' first)")
    parser.add_argument("--basic-user", metavar="USER:PASSWORD", help="HTTP Basic instead")
    if json_option:
        parser.add_argument("--json", action="store_true", help="the API's JSON, unchanged")


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    return str(value)


def _matcher(entry: dict[str, Any]) -> str:
    if entry.get("name"):  # a ready queue suspension
        return f"ready queue {entry['name']}"
    if entry.get("queue_names"):
        return "queue " + ",".join(entry["queue_names"])
    keys = ("campaign", "tenant", "domain", "routing_domain")
    return " ".join(f"{k}={entry[k]}" for k in keys if entry.get(k)) or "everything"


def _rule_rows(entries: list[dict[str, Any]], count_key: str | None) -> list[tuple[str, ...]]:
    headers: tuple[str, ...] = ("ID", "MATCH", "LEFT", "REASON")
    if count_key is not None:
        headers += (count_key.upper(), "PENDING")
    rows: list[tuple[str, ...]] = [headers]
    for entry in entries:
        row: tuple[str, ...] = (entry["id"], _matcher(entry), entry["duration"], entry["reason"])
        if count_key is not None:
            row += (str(entry[f"total_{count_key}"]), str(entry.get("pending", "-")))
        rows.append(row)
    return rows


def _pairs(pairs: list[tuple[str, Any]]) -> str:
    return table([("FIELD", "VALUE"), *((k, _cell(v)) for k, v in pairs)])


# --- the commands -----------------------------------------------------------------------

Render = Callable[[Any, argparse.Namespace], str]


def _rule_list(path: str, count_key: str | None) -> tuple[Callable[..., Any], Render]:
    def fetch(client: AdminClient, args: argparse.Namespace) -> Any:
        return client.call("GET", path)

    def render(answer: Any, args: argparse.Namespace) -> str:
        if not answer:
            return "none"
        return table(_rule_rows(answer, count_key))

    return fetch, render


def _cancel(path: str) -> tuple[Callable[..., Any], Render]:
    def fetch(client: AdminClient, args: argparse.Namespace) -> Any:
        return client.call("DELETE", path, {"id": args.id})

    return fetch, lambda answer, args: str(answer)


def _inspect_sched_q(client: AdminClient, args: argparse.Namespace) -> Any:
    return client.call(
        "GET",
        "/api/admin/inspect-sched-q/v1",
        queue_name=args.queue,
        want_body="true" if args.want_body else None,
        limit=args.limit,
    )


def _render_sched_q(answer: Any, args: argparse.Namespace) -> str:
    held = _pairs(
        [(k, answer[k]) for k in ("queue_name", "num_scheduled", "delayed_metric")]
        + [
            ("suspended", (answer["suspended"] or {}).get("reason")),
            ("bounced", (answer["bounced"] or {}).get("reason")),
        ]
    )
    rows: list[tuple[str, ...]] = [("ID", "RECIPIENT", "DUE", "ATTEMPTS", "IN FLIGHT")]
    for item in answer["messages"]:
        message = item["message"]
        rows.append(
            (
                item["id"],
                _cell(message["recipient"]),
                _cell(message["due"]),
                _cell(message["num_attempts"]),
                _cell(message.get("in_flight")),
            )
        )
    return held + ("\n\n" + table(rows) if len(rows) > 1 else "")


def _inspect_message(client: AdminClient, args: argparse.Namespace) -> Any:
    return client.call(
        "GET",
        "/api/admin/inspect-message/v1",
        id=args.id,
        want_body="true" if args.want_body else None,
    )


def _render_message(answer: Any, args: argparse.Namespace) -> str:
    message = answer["message"]
    text = _pairs([("id", answer["id"]), *((k, v) for k, v in message.items() if k != "data")])
    return text + (f"\n\n{message['data']}" if message.get("data") is not None else "")


def _inspect_ready_q(client: AdminClient, args: argparse.Namespace) -> Any:
    return client.call("GET", "/api/admin/inspect-ready-q/v1", queue_name=args.queue)


def _render_ready_q(answer: Any, args: argparse.Namespace) -> str:
    keys = ("queue_name", "egress_source", "node", "updated_at")
    state = answer["state"]
    states = [
        (name, f"since {value['since']}: {value.get('context') or value.get('reason')}")
        for name in ("connection_limited", "connection_rate_throttled", "suspended")
        if (value := state.get(name)) is not None
    ]
    counts = [(k, state[k]) for k in ("connection_count", "ready_count")]
    return _pairs(
        [*((k, answer.get(k)) for k in keys), *counts, *states, *answer["path_config"].items()]
    )


def _ready_q_states(client: AdminClient, args: argparse.Namespace) -> Any:
    return client.call("GET", "/api/admin/ready-q-states/v1", queues=",".join(args.queue) or None)


def _render_states(answer: Any, args: argparse.Namespace) -> str:
    rows: list[tuple[str, ...]] = [("QUEUE", "STATE", "CONTEXT", "SINCE")]
    for queue, states in sorted(answer["states_by_ready_queue"].items()):
        for name, state in sorted(states.items()):
            rows.append((queue, name, state["context"], state["since"]))
    return table(rows) if len(rows) > 1 else "no ready queue in a special state"


def _resolve(client: AdminClient, args: argparse.Namespace) -> Any:
    return client.call("GET", "/api/admin/resolve-egress-path/v1", domain=args.domain)


def _render_resolve(answer: Any, args: argparse.Namespace) -> str:
    mx = answer["mx"] or {}
    pairs = [
        ("domain", answer["domain"]),
        ("ready queue", answer["queue_name"]),
        ("site", mx.get("site_name")),
        ("is_mx", mx.get("is_mx")),
        *((f"mx {pref}", hosts) for pref, hosts in mx.get("by_preference", {}).items()),
        ("path_config", answer["path_config"]),
    ]
    return _pairs(pairs)


def _post(path: str, body: Callable[[argparse.Namespace], Any] | None = None) -> Any:
    def fetch(client: AdminClient, args: argparse.Namespace) -> Any:
        return client.call("POST", path, None if body is None else body(args))

    return fetch


def _machine_info(client: AdminClient, args: argparse.Namespace) -> Any:
    return client.call("GET", "/api/machine-info")


def _text(answer: Any, args: argparse.Namespace) -> str:
    return answer if isinstance(answer, str) else json.dumps(answer, indent=2)


def _run(fetch: Callable[..., Any], render: Render) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        client = AdminClient.from_args(args)
        try:
            answer = fetch(client, args)
        except (AdminApiError, urllib.error.URLError, OSError) as error:
            print(f"relaystream {args.command}: {client.endpoint}: {error}", file=sys.stderr)
            return EXIT_FAILED
        if getattr(args, "json", False) and not isinstance(answer, str):
            print(json.dumps(answer, indent=2, sort_keys=True))
        else:
            print(render(answer, args))
        return 0

    return run


def register(subparsers: Any) -> None:
    def add(name: str, help_text: str, fetch: Any, render: Render) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = subparsers.add_parser(
            name,
            help=help_text,
            description=__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        add_client_options(parser)
        parser.set_defaults(handler=_run(fetch, render), command=name)
        return parser

    add(
        "bounce-list",
        "active bounces and what each bounced, per the admin API",
        *_rule_list("/api/admin/bounce/v1", "bounced"),
    )
    add("bounce-cancel", "cancel a bounce", *_cancel("/api/admin/bounce/v1")).add_argument("id")
    add("suspend-list", "active suspensions", *_rule_list("/api/admin/suspend/v1", None))
    add("suspend-cancel", "cancel a suspension", *_cancel("/api/admin/suspend/v1")).add_argument(
        "id"
    )
    ready_q = add(
        "suspend-ready-q",
        "suspend a ready queue (source->site@smtp_client) on every delivery instance",
        _post(
            "/api/admin/suspend-ready-q/v1",
            lambda a: {"name": a.name, "reason": a.reason, "duration": a.duration},
        ),
        lambda answer, args: f"suspended {args.name}: id {answer['id']}",
    )
    ready_q.add_argument("name")
    ready_q.add_argument("--reason", required=True)
    ready_q.add_argument("--duration", help="how long (default 5m), e.g. 1h")
    add(
        "suspend-ready-q-list",
        "ready queue suspensions",
        *_rule_list("/api/admin/suspend-ready-q/v1", None),
    )
    add(
        "suspend-ready-q-cancel",
        "cancel a ready queue suspension",
        *_cancel("/api/admin/suspend-ready-q/v1"),
    ).add_argument("id")
    sched = add(
        "inspect-sched-q",
        "a scheduled queue held by the instance",
        _inspect_sched_q,
        _render_sched_q,
    )
    sched.add_argument("queue")
    sched.add_argument("--want-body", action="store_true")
    sched.add_argument("--limit", type=int)
    message = add("inspect", "a queued message", _inspect_message, _render_message)
    message.add_argument("id")
    message.add_argument("--want-body", action="store_true")
    add(
        "inspect-ready-q",
        "a ready queue (a delivery instance's connection pool): connections, states, path",
        _inspect_ready_q,
        _render_ready_q,
    ).add_argument("queue")
    add(
        "ready-q-states",
        "ready queues of every delivery instance in a special state (limited, throttled, "
        "suspended)",
        _ready_q_states,
        _render_states,
    ).add_argument("--queue", action="append", default=[])
    add(
        "resolve-egress-path",
        "queue config, MX plan and ready queue of a domain",
        _resolve,
        _render_resolve,
    ).add_argument("domain")
    add(
        "set-log-filter",
        "set logger levels, e.g. relaystream.scheduling=debug",
        _post("/api/admin/set_diagnostic_log_filter/v1", lambda a: {"filter": a.filter}),
        _text,
    ).add_argument("filter")
    add(
        "bump-config-epoch",
        "ask the policy for every queue's config again",
        _post("/api/admin/bump-config-epoch"),
        _text,
    )
    add(
        "machine-info",
        "the instance's process and machine",
        _machine_info,
        lambda answer, args: _pairs(sorted(answer.items())),
    )


# --- progress of a bulk bounce or rebind ------------------------------------------------


def _bar(done: int, pending: int, width: int = 30) -> str:
    total = done + pending
    filled = width if total == 0 else width * done // total
    return "[" + "#" * filled + "." * (width - filled) + "]"


def follow_progress(
    client: AdminClient,
    action: str,
    rule_id: str,
    *,
    timeout: float,
    out: TextIO = sys.stderr,
    interval: float = 0.5,
) -> dict[str, Any] | None:
    """Polls the rule's list entry until nothing matching is left to act on (`pending` 0),
    drawing a progress bar; returns the last entry (None if the instance never showed it)."""
    count_key = {"bounce": "bounced", "rebind": "rebound"}[action]
    deadline = time.monotonic() + timeout
    last: dict[str, Any] | None = None
    shown = ""
    while time.monotonic() < deadline:
        entries = client.call("GET", f"/api/admin/{action}/v1")
        last = next((e for e in entries if e["id"] == rule_id), last)
        if last is not None:
            done, pending = last[f"total_{count_key}"], last["pending"]
            line = f"{_bar(done, pending)} {done} {count_key}, {pending} pending"
            if line != shown:
                out.write(("\r" if out.isatty() else "") + line + ("" if out.isatty() else "\n"))
                out.flush()
                shown = line
            if pending == 0:
                break
        time.sleep(interval)
    if out.isatty():
        out.write("\n")
    return last
