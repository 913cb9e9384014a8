"""The message object's methods that read or change the message (message.lua): envelope,
header fields, data, address headers, queue name, conformance, scheduling.

The state is the running handler's MessageState (message_state.py), reached through the
host context; what the handler changed goes back to the caller in PolicyAccepted.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from email.header import Header
from email.utils import getaddresses

from ...domain.envelope import EnvelopeAddress, EnvelopeAddressError
from ...domain.queue_name import QueueName, QueueNameError
from ...domain.scheduling_constraints import SchedulingError, parse_scheduling
from .. import conformance, header_import, mime_text
from ..host import HostCallback, HostContext, HostError
from ..message_state import MessageState


def envelope_address(method: str, text: object, *, null_allowed: bool) -> str:
    """`text` checked as an envelope address (KumoMTA's EnvelopeAddress), as given."""
    if not isinstance(text, str):
        raise HostError(f"msg:{method}: expected an address, got {type(text).__name__}")
    if text == "" and null_allowed:
        return text
    try:
        EnvelopeAddress.parse(text)
    except EnvelopeAddressError as err:
        raise HostError(f"msg:{method}: {err}") from err
    return text


def header_name(method: str, name: object) -> str:
    if not isinstance(name, str) or not name:
        raise HostError(f"msg:{method}: the header name must be a non-empty string")
    if any(ord(c) <= 32 or ord(c) >= 127 or c == ":" for c in name):
        raise HostError(f"msg:{method}: {name!r} is not a header field name")
    return name


def header_value(method: str, name: str, value: object, encode: object) -> str:
    if not isinstance(value, str):
        raise HostError(f"msg:{method}('{name}'): the value must be a string")
    if encode:
        # RFC 2047 words for non-ASCII text; folding at whitespace for long ASCII text.
        return Header(
            value, "utf-8" if not value.isascii() else "us-ascii", header_name=name
        ).encode(linesep="\r\n")
    if "\r" in value or "\n" in value:
        # A value with its own line breaks could smuggle header fields (or a body) in.
        lines = value.replace("\r\n", "\n").split("\n")
        if any(not line or line[0] not in " \t" for line in lines[1:]):
            raise HostError(
                f"msg:{method}('{name}'): a line break in the value must start a folded "
                "line (followed by a space or tab)"
            )
    return value


def x_header_meta_key(name: str) -> str:
    """KumoMTA's import_x_headers naming: lowercased, `-` as `_`."""
    return name.lower().replace("-", "_")


def address_header(state: MessageState, name: str) -> dict[str, object] | None:
    values = state.values(name)
    if not values:
        return None
    entries = [
        {"name": display or None, "address": address or None}
        for display, address in getaddresses([values[0]])
        if display or address
    ]
    return {"list": entries, "json": json.dumps(entries if len(entries) != 1 else entries[0])}


def host_callbacks(context: HostContext) -> Mapping[str, HostCallback]:
    slot = context.message

    def set_sender(address: object) -> None:
        state = slot.current("set_sender")
        state.sender = envelope_address("set_sender", address, null_allowed=True)
        state.sender_changed = True

    def set_recipient(address: object) -> None:
        state = slot.current("set_recipient")
        state.recipient = envelope_address("set_recipient", address, null_allowed=False)
        state.recipient_changed = True

    def first_header(name: str) -> str | None:
        values = slot.current("get_first_named_header_value").values(name)
        return values[0] if values else None

    def add_header(name: object, value: object, encode: object, first: bool) -> None:
        method = "prepend_header" if first else "append_header"
        state = slot.current(method)
        checked_name = header_name(method, name)
        text = header_value(method, checked_name, value, encode).replace("\r\n", "\n")
        # Folded lines end like the message's other lines.
        text = text.replace("\n", state.line_ending.decode())
        state.add_field(method, state.field_bytes(checked_name, text), first=first)

    def remove_named(name: object) -> None:
        wanted = header_name("remove_all_named_headers", name).lower()
        slot.current("remove_all_named_headers").remove_fields(
            "remove_all_named_headers", lambda field: field == wanted
        )

    def remove_x(names: object) -> None:
        state = slot.current("remove_x_headers")
        if names is None:
            state.remove_fields("remove_x_headers", lambda field: field.startswith("x-"))
            return
        wanted = {str(n).lower() for n in _string_list("remove_x_headers", names)}
        state.remove_fields("remove_x_headers", lambda field: field in wanted)

    def x_headers(names: object) -> list[list[str]]:
        state = slot.current("import_x_headers")
        if names is None:
            wanted = None
        else:
            wanted = {n.lower() for n in _string_list("import_x_headers", names)}
        return [
            [x_header_meta_key(name), value]
            for name, value in state.named_fields()
            if (name.lower().startswith("x-") if wanted is None else name.lower() in wanted)
        ]

    def import_headers(specs_json: str) -> list[list[object]]:
        state = slot.current("import_headers")
        try:
            specs = header_import.parse_specs(json.loads(specs_json))
        except header_import.HeaderImportError as err:
            raise HostError(f"msg:import_headers: {err}") from err
        meta, removed = header_import.imported_meta(specs, state.named_fields())
        if removed:
            state.remove_fields("import_headers", lambda name: name in removed)
        return [[key, value] for key, value in meta.items()]

    def append_text(subtype: str, content: object) -> bool:
        method = f"append_text_{'html' if subtype == 'html' else 'plain'}"
        if not isinstance(content, str):
            raise HostError(f"msg:{method}: the content must be a string")
        state = slot.current(method)
        changed = mime_text.append_text(state.data(method), subtype, content)
        if changed is None:
            return False
        state.set_data(changed)
        return True

    def set_data(text: object, latin1: object) -> None:
        if not isinstance(text, str):
            raise HostError("msg:set_data: the payload must be a string")
        # The sandbox hands over a payload that is not UTF-8 one byte per code point.
        data = text.encode("latin-1") if latin1 else text.encode("utf-8")
        slot.current("set_data").set_data(data)

    def queue_name(meta_json: str) -> str:
        state = slot.current("queue_name")
        meta = json.loads(meta_json)
        domain = state.recipient.rpartition("@")[2]
        try:
            return QueueName.for_message(domain, meta)
        except QueueNameError as err:
            raise HostError(f"msg:queue_name: {err}") from err

    def check_fix_conformance(checks: object, fixes: object, settings: object) -> str | None:
        state = slot.current("check_fix_conformance")
        state.require_whole("check_fix_conformance")
        try:
            return conformance.check_fix(state, checks, fixes, settings)
        except conformance.ConformanceError as err:
            raise HostError(f"msg:check_fix_conformance: {err}") from err

    def scheduling(method: str, params: object) -> None:
        try:
            parse_scheduling(params)
        except SchedulingError as err:
            raise HostError(f"msg:{method}: {err}") from err
        # Valid, but nothing downstream would honour it yet: refuse rather than ignore.
        raise HostError(
            f"msg:{method}: relaystream's scheduler does not yet honour per-message scheduling "
            "(first_attempt, expires, dow/tz/start/end); refused so that the constraint is "
            "not silently ignored"
        )

    def scheduling_header(name: object, remove: object) -> None:
        """Nothing when the header is absent; otherwise its JSON is checked and refused."""
        method = "import_scheduling_header"
        values = slot.current(method).values(header_name(method, name))
        if not values:
            return None
        try:
            params = json.loads(values[0])
        except json.JSONDecodeError as err:
            raise HostError(f"msg:{method}: header {name}: invalid JSON: {err}") from err
        scheduling(method, params)
        return None

    return {
        "message_id": lambda: slot.current("id").id,
        "message_sender": lambda: slot.current("sender").sender,
        "message_recipient": lambda: slot.current("recipient").recipient,
        "message_set_sender": set_sender,
        "message_set_recipient": set_recipient,
        "message_first_header": first_header,
        "message_all_headers_named": lambda name: slot.current(
            "get_all_named_header_values"
        ).values(name),
        "message_all_headers": lambda: [
            [name, value] for name, value in slot.current("get_all_headers").named_fields()
        ],
        "message_add_header": add_header,
        "message_remove_named": remove_named,
        "message_remove_x": remove_x,
        "message_x_headers": x_headers,
        "message_get_data": lambda: slot.current("get_data").data("get_data"),
        "message_set_data": set_data,
        "message_import_headers": import_headers,
        "message_append_text": append_text,
        "message_address_header": lambda name: address_header(
            slot.current("get_address_header"), header_name("get_address_header", name)
        ),
        "message_queue_name": queue_name,
        "message_check_fix_conformance": check_fix_conformance,
        "message_scheduling": lambda params_json: scheduling(
            "set_scheduling", json.loads(params_json)
        ),
        "message_scheduling_header": scheduling_header,
    }


def _string_list(method: str, names_json: object) -> list[str]:
    """The list of header names a policy passed (message.lua hands it over as JSON)."""
    items = json.loads(str(names_json))
    if items == {}:
        items = []  # an empty Lua table
    if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
        raise HostError(f"msg:{method}: expected a list of header names")
    return items
