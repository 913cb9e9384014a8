"""kumo.dns: a policy's own DNS lookups (lookup_mx, lookup_txt, lookup_addr, lookup_ptr,
rbl_lookup) with dnspython, each bounded by its resolver's timeout and by what is left of the
policy call's deadline, whichever comes first.

The resolvers are this policy's: the system's (/etc/resolv.conf) until `configure_resolver`
(or `configure_unbound_resolver`, the same here: no DNSSEC validation) names servers, or
`configure_test_resolver` serves zones given as text; `define_resolver` adds named ones. They
configure the policy's lookups only: delivery's MX resolution keeps its own settings
(RELAYSTREAM_DELIVERY_NAMESERVERS), which dns.lua says in a log line when one is called.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dns.exception
import dns.name
import dns.nameserver
import dns.rdataclass
import dns.rdatatype
import dns.resolver
import dns.reversename
import dns.zone

from ...domain.mx_plan import MxAnswer, MxAnswerKind, MxLookupFailed, MxRecord, plan_from_mx_answer
from ...domain.routing_target import RoutingTarget, RoutingTargetError, parse_ip
from ..host import HostCallback, HostContext, HostError

policy_log = logging.getLogger("relaystream.policy")
DEFAULT_TIMEOUT = 5.0
DEFAULT_RESOLVER = ""
# KumoMTA's resolver options this applies; any other is named in the configure log line.
# KumoMTA's default resolver (hickory, use_hosts_file Auto) answers address lookups from the
# hosts file first: its Docker examples find their own container by HOSTNAME that way.
HOSTS_FILE = Path("/etc/hosts")
APPLIED_OPTIONS = frozenset({"timeout", "attempts"})


class NoSuchName(Exception):
    """NXDOMAIN."""


@dataclass
class TestZones:
    """configure_test_resolver: answers from zone texts; names outside them do not exist, and
    the `servfail` names fail."""

    zones: list[dns.zone.Zone] = field(default_factory=list)
    servfail: frozenset[dns.name.Name] = frozenset()

    def query(self, name: dns.name.Name, rdtype: dns.rdatatype.RdataType) -> list[Any]:
        if name in self.servfail:
            raise HostError(f"{dns.rdatatype.to_text(rdtype)} lookup for {name} failed: SERVFAIL")
        for zone in self.zones:
            if zone.origin is not None and name.is_subdomain(zone.origin):
                node = zone.get_node(name)
                if node is None:
                    raise NoSuchName(str(name))
                rdataset = node.get_rdataset(dns.rdataclass.IN, rdtype)
                return list(rdataset) if rdataset is not None else []
        raise NoSuchName(str(name))


Resolver = dns.resolver.Resolver | TestZones


def deadline_of(seconds: object) -> float:
    """The monotonic time by which a lookup of several queries must be done: each query gets
    what is left, so two queries cannot take twice the time the policy call has."""
    left = float(seconds) if isinstance(seconds, int | float) else DEFAULT_TIMEOUT
    return time.monotonic() + (left if math.isfinite(left) else DEFAULT_TIMEOUT)


def system_resolver() -> dns.resolver.Resolver:
    try:
        resolver = dns.resolver.Resolver()
    except dns.resolver.NoResolverConfiguration as err:
        raise HostError(f"no system DNS configuration: {err}") from err
    resolver.timeout = resolver.lifetime = DEFAULT_TIMEOUT
    resolver.cache = dns.resolver.LRUCache()
    return resolver


def parse_server(entry: object) -> tuple[str, int]:
    """'IP:PORT', '[IPv6]:PORT', 'IP', or { socket_addr = ... }."""
    if isinstance(entry, Mapping):
        entry = entry.get("socket_addr")
    if not isinstance(entry, str) or not entry:
        raise HostError(
            f"a name server must be 'IP:PORT' or {{ socket_addr = ... }}, got {entry!r}"
        )
    host, port_text = entry, "53"
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        port_text = rest.removeprefix(":") or "53"
    elif entry.count(":") == 1:
        host, port_text = entry.split(":")
    if parse_ip(host) is None or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise HostError(f"a name server must be an IP address with an optional port, got {entry!r}")
    return host, int(port_text)


def configured_resolver(
    params: object, servers_optional: bool = False
) -> tuple[dns.resolver.Resolver, list[str]]:
    """A resolver from configure_resolver's table, and the option names it does not apply.
    Unbound's configuration may omit the servers (it then resolves from the root): here the
    system's name servers serve instead."""
    if not isinstance(params, Mapping):
        raise HostError("expected a table { name_servers = { 'IP:PORT', ... }, options = ... }")
    servers = params.get("name_servers")
    if servers is None and servers_optional:
        resolver = system_resolver()
    elif not isinstance(servers, Sequence) or isinstance(servers, str) or not servers:
        raise HostError("name_servers is required: a list of 'IP:PORT' entries")
    else:
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = [dns.nameserver.Do53Nameserver(*parse_server(s)) for s in servers]
        resolver.cache = dns.resolver.LRUCache()
    timeout = DEFAULT_TIMEOUT
    options = params.get("options") or {}
    if not isinstance(options, Mapping):
        raise HostError("options must be a table")
    if isinstance(options.get("timeout"), int | float):
        timeout = float(options["timeout"])
    resolver.timeout = resolver.lifetime = timeout
    if isinstance(options.get("attempts"), int):
        resolver.retry_servfail = options["attempts"] > 1
    ignored = sorted(str(key) for key in options if key not in APPLIED_OPTIONS)
    ignored += sorted(
        str(key) for key in params if key not in ("name_servers", "options", "domain", "search")
    )
    return resolver, ignored


def test_zones(config: object) -> tuple[TestZones, list[str]]:
    """The zones of configure_test_resolver's argument: a list of zone texts, or KumoMTA's
    { zones = { text or { zone = text, secure = ... }, ... }, servfail = { names } }; and
    what is not applied (`secure`: relaystream validates no DNSSEC)."""
    ignored: list[str] = []
    servfail: list[object] = []
    zone_entries: object = config
    if isinstance(config, Mapping):
        zone_entries = config.get("zones", [])
        servfail = list(config.get("servfail") or [])
        ignored += sorted(str(key) for key in config if key not in ("zones", "servfail"))
    if not isinstance(zone_entries, Sequence) or isinstance(zone_entries, str):
        raise HostError("expected a list of zone texts, or { zones = { ... } }")
    zones = TestZones(servfail=frozenset(as_name(name) for name in servfail))
    for entry in zone_entries:
        text = entry.get("zone") if isinstance(entry, Mapping) else entry
        if isinstance(entry, Mapping) and "secure" in entry and "secure" not in ignored:
            ignored.append("secure")
        if not isinstance(text, str):
            raise HostError("each zone must be a string in zone file format")
        try:
            zones.zones.append(
                dns.zone.from_text(text, origin=None, relativize=False, check_origin=False)
            )
        except (dns.exception.DNSException, ValueError) as err:
            raise HostError(f"invalid zone: {err}") from err
    return zones, ignored


KINDS = frozenset({"Hickory", "Unbound", "Test"})


def any_resolver(params: object, unbound: bool = False) -> tuple[Resolver, list[str]]:
    """A resolver from configure_resolver's table: plain, or tagged with its kind
    ({ Hickory = {...} }, { Unbound = {...} }, { Test = {...} }), and what it does not apply."""
    if isinstance(params, Mapping) and len(params) == 1 and set(params) <= KINDS:
        ((kind, inner),) = params.items()
        if kind == "Test":
            return test_zones(inner)
        return configured_resolver(inner, kind == "Unbound")
    return configured_resolver(params, unbound)


def as_name(text: object) -> dns.name.Name:
    if not isinstance(text, str) or not text:
        raise HostError(f"expected a DNS name, got {text!r}")
    try:
        return dns.name.from_text(text)
    except (dns.exception.DNSException, UnicodeError) as err:
        raise HostError(f"invalid DNS name {text!r}: {err}") from err


def reverse_name(ip: object) -> dns.name.Name:
    text = ip if isinstance(ip, str) else ""
    try:
        # A socket address ('10.0.0.1:25', '[::1]:25') is accepted as its IP, as KumoMTA does.
        if text.startswith("["):
            text = text[1:].partition("]")[0]
        elif text.count(":") == 1:
            text = text.split(":")[0]
        return dns.reversename.from_address(str(ipaddress.ip_address(text)))
    except ValueError as err:
        raise HostError(f"not an IP address: {ip!r}") from err


def hosts_addresses(text: str, name: str) -> list[str]:
    """The addresses a hosts file gives `name` (any case, trailing dot or not), in its order."""
    wanted = name.rstrip(".").lower()
    found: list[str] = []
    for line in text.splitlines():
        fields = line.partition("#")[0].split()
        aliases = (alias.rstrip(".").lower() for alias in fields[1:])
        if len(fields) >= 2 and parse_ip(fields[0]) is not None and wanted in aliases:
            found.append(fields[0])
    return found


class PolicyDns:
    """One policy's resolvers and lookups. `hosts_file` answers address lookups on the
    default resolver while the policy has not configured another one."""

    def __init__(self, hosts_file: Path = HOSTS_FILE) -> None:
        self._resolvers: dict[str, Resolver] = {}
        self._hosts_file = hosts_file
        self._default_configured = False

    def resolver(self, name: object) -> Resolver:
        key = DEFAULT_RESOLVER if name is None else name
        if not isinstance(key, str):
            raise HostError(f"a resolver name must be a string, got {name!r}")
        found = self._resolvers.get(key)
        if found is None:
            if key != DEFAULT_RESOLVER:
                raise HostError(f"no resolver named {key!r} (kumo.dns.define_resolver)")
            found = self._resolvers[key] = system_resolver()
        return found

    def set_resolver(self, name: str, resolver: Resolver) -> None:
        self._resolvers[name] = resolver
        self._default_configured |= name == DEFAULT_RESOLVER

    def query(
        self, name: dns.name.Name, rdtype: str, resolver_name: object, seconds: object
    ) -> list[Any]:
        """The answer's records; [] for NODATA; NoSuchName for NXDOMAIN; HostError else."""
        resolver = self.resolver(resolver_name)
        kind = dns.rdatatype.from_text(rdtype)
        if isinstance(resolver, TestZones):
            return resolver.query(name, kind)
        left = float(seconds) if isinstance(seconds, int | float) else DEFAULT_TIMEOUT
        if not math.isfinite(left):
            left = DEFAULT_TIMEOUT
        if left <= 0:
            raise HostError(f"{name}: no time left before the policy call's deadline")
        lifetime = min(resolver.lifetime, left)
        try:
            return list(resolver.resolve(name, kind, search=False, lifetime=lifetime))
        except dns.resolver.NXDOMAIN as err:
            raise NoSuchName(str(name)) from err
        except dns.resolver.NoAnswer:
            return []
        except dns.exception.Timeout as err:
            raise HostError(f"{rdtype} lookup for {name} timed out after {lifetime:.3g} s") from err
        except dns.exception.DNSException as err:
            raise HostError(f"{rdtype} lookup for {name} failed: {err}") from err

    def lookup_mx(self, domain: object, resolver_name: object, seconds: object) -> dict[str, Any]:
        if not isinstance(domain, str):
            raise HostError(f"expected a domain, got {domain!r}")
        try:
            target = RoutingTarget.classify(domain)
        except RoutingTargetError as err:
            raise HostError(str(err)) from err
        if target.is_literal:
            host = target.host
            return {
                "by_pref": {1: [host]},
                "hosts": [host],
                "site_name": target.literal_site_name,
                "domain_name": domain,
                "is_domain_literal": True,
                "is_mx": True,
                "mta_sts": "None",
            }
        try:
            records = self.query(as_name(target.host), "MX", resolver_name, seconds)
            answer = MxAnswer(
                MxAnswerKind.RECORDS if records else MxAnswerKind.NODATA,
                tuple(MxRecord(int(r.preference), r.exchange.to_text()) for r in records),
            )
        except NoSuchName as err:
            raise HostError(f"MX lookup for {target.host}: no such domain (NXDOMAIN)") from err
        try:
            plan = plan_from_mx_answer(target, answer)
        except MxLookupFailed as err:
            raise HostError(str(err)) from err
        return {
            "by_pref": {pref: [f"{host}." for host in hosts] for pref, hosts in plan.by_preference},
            "hosts": [f"{host}." for host in plan.hosts],
            "site_name": plan.site_name,
            "domain_name": f"{plan.domain}.",
            "is_domain_literal": False,
            "is_mx": plan.is_mx,
            "mta_sts": "None",
        }

    def lookup_txt(self, domain: object, resolver_name: object, seconds: object) -> list[str]:
        try:
            records = self.query(as_name(domain), "TXT", resolver_name, seconds)
        except NoSuchName as err:
            raise HostError(f"TXT lookup for {domain}: no such domain (NXDOMAIN)") from err
        return [b"".join(r.strings).decode("utf-8", "replace") for r in records]

    def lookup_addr(
        self, name: object, resolver_name: object, strategy: object, seconds: object
    ) -> list[str]:
        kinds = {
            None: ("A", "AAAA"),
            "Ipv4AndIpv6": ("A", "AAAA"),
            "Ipv6AndIpv4": ("AAAA", "A"),
            "Ipv4thenIpv6": ("A", "AAAA"),
            "Ipv6thenIpv4": ("AAAA", "A"),
            "Ipv4Only": ("A",),
            "Ipv6Only": ("AAAA",),
        }.get(strategy if isinstance(strategy, str) or strategy is None else "?")
        if kinds is None:
            raise HostError(f"unknown lookup strategy {strategy!r}")
        fqdn = as_name(name)
        if resolver_name is None and not self._default_configured:
            listed = self._hosts_file_addresses(fqdn)
            by_kind = {
                "A": [a for a in listed if ipaddress.ip_address(a).version == 4],
                "AAAA": [a for a in listed if ipaddress.ip_address(a).version == 6],
            }
            if any(by_kind[kind] for kind in kinds):
                return [address for kind in kinds for address in by_kind[kind]]
        found: list[str] = []
        missing = 0
        deadline = deadline_of(seconds)
        for kind in kinds:
            left = deadline - time.monotonic()
            try:
                found += [r.to_text() for r in self.query(fqdn, kind, resolver_name, left)]
            except NoSuchName:
                missing += 1
        if missing == len(kinds):
            raise HostError(f"address lookup for {name}: no such name (NXDOMAIN)")
        return found

    def _hosts_file_addresses(self, name: dns.name.Name) -> list[str]:
        try:
            text = self._hosts_file.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return []  # no hosts file: DNS alone, as hickory
        return hosts_addresses(text, name.to_text(omit_final_dot=True))

    def lookup_ptr(self, ip: object, resolver_name: object, seconds: object) -> list[str]:
        try:
            records = self.query(reverse_name(ip), "PTR", resolver_name, seconds)
        except NoSuchName:
            return []
        return [r.target.to_text() for r in records]

    def rbl_lookup(
        self, ip: object, base: object, resolver_name: object, seconds: object
    ) -> list[str | None]:
        """[listed address, its TXT reason] or [None, None] when not listed."""
        if not isinstance(base, str) or not base:
            raise HostError(f"expected the list's base domain, got {base!r}")
        reversed_ip = reverse_name(ip).relativize(dns.reversename.ipv4_reverse_domain)
        if reverse_name(ip).is_subdomain(dns.reversename.ipv6_reverse_domain):
            reversed_ip = reverse_name(ip).relativize(dns.reversename.ipv6_reverse_domain)
        query = dns.name.Name(reversed_ip.labels + as_name(base).labels)
        deadline = deadline_of(seconds)
        try:
            listed = self.query(query, "A", resolver_name, seconds)
        except NoSuchName:
            return [None, None]
        if not listed:
            return [None, None]
        try:
            reasons = self.query(query, "TXT", resolver_name, deadline - time.monotonic())
        except NoSuchName:
            reasons = []
        reason = b"".join(reasons[0].strings).decode("utf-8", "replace") if reasons else None
        return [listed[0].to_text(), reason]


def reverse_ip(ip: object) -> str:
    name = reverse_name(ip)
    for domain in (dns.reversename.ipv4_reverse_domain, dns.reversename.ipv6_reverse_domain):
        if name.is_subdomain(domain):
            return name.relativize(domain).to_text()
    raise HostError(f"not an IP address: {ip!r}")


def load_resolv_conf(context: HostContext, path: object) -> dict[str, Any]:
    text = context.read_data_file("/etc/resolv.conf" if path is None else path)
    servers: list[str] = []
    options: dict[str, Any] = {}
    config: dict[str, Any] = {"name_servers": servers, "options": options}
    for line in text.splitlines():
        words = line.split("#")[0].split(";")[0].split()
        if len(words) < 2:
            continue
        if words[0] == "nameserver":
            servers.append(f"[{words[1]}]:53" if ":" in words[1] else f"{words[1]}:53")
        elif words[0] == "domain":
            config["domain"] = words[1]
        elif words[0] == "search":
            config["search"] = words[1:]
        elif words[0] == "options":
            for option in words[1:]:
                key, _, value = option.partition(":")
                if key in ("ndots", "timeout", "attempts") and value.isdigit():
                    options[key] = int(value)
                elif key == "edns0":
                    options["edns0"] = True
    return config


def configured(location: object, function_name: object, ignored: object) -> None:
    """The one log line a configuring call gives (dns.lua calls it each time: init runs once
    per load)."""
    policy_log.warning(
        "%skumo.dns.%s: configures this policy's own kumo.dns lookups in this service; "
        "delivery's MX resolution keeps its settings (RELAYSTREAM_DELIVERY_NAMESERVERS)%s",
        location,
        function_name,
        f"; not applied here: {ignored}" if ignored else "",
    )


def host_callbacks(context: HostContext) -> Mapping[str, HostCallback]:
    policy_dns = PolicyDns()

    def configure(params_json: object, unbound: object = False) -> list[str]:
        resolver, ignored = any_resolver(json.loads(str(params_json)), unbound is True)
        policy_dns.set_resolver(DEFAULT_RESOLVER, resolver)
        return ignored

    def configure_test(zones_json: object) -> list[str]:
        zones, ignored = test_zones(json.loads(str(zones_json)))
        policy_dns.set_resolver(DEFAULT_RESOLVER, zones)
        return ignored

    def define(name: object, params_json: object) -> list[str]:
        if not isinstance(name, str) or not name:
            raise HostError(f"a resolver name must be a non-empty string, got {name!r}")
        params = json.loads(str(params_json))
        if not (isinstance(params, Mapping) and len(params) == 1 and set(params) <= KINDS):
            raise HostError("expected { Hickory = {...} }, { Unbound = {...} } or { Test = {...} }")
        resolver, ignored = any_resolver(params)
        policy_dns.set_resolver(name, resolver)
        return ignored

    return {
        "dns_configured": configured,
        "dns_configure": configure,
        "dns_configure_test": configure_test,
        "dns_define": define,
        "dns_lookup_mx": policy_dns.lookup_mx,
        "dns_lookup_txt": policy_dns.lookup_txt,
        "dns_lookup_addr": policy_dns.lookup_addr,
        "dns_lookup_ptr": policy_dns.lookup_ptr,
        "dns_rbl_lookup": policy_dns.rbl_lookup,
        "dns_ptr_host": lambda ip: reverse_name(ip).to_text(omit_final_dot=True),
        "dns_reverse_ip": reverse_ip,
        "dns_load_resolv_conf": lambda path=None: load_resolv_conf(context, path),
    }
