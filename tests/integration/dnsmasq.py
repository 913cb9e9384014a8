"""A real dnsmasq serving test DNS records on a loopback port, for resolver, delivery and
end-to-end tests.

    with DnsServer(DnsRecords(
        mx=[MxHost("example.test", "mx1.example.test", 10)],
        hosts={"mx1.example.test": ["127.0.0.10", "::10"]},
        null_mx=["nullmx.test"],
    )) as dns_server:
        resolver = MxResolver([dns_server.address])

Every name under `local_domains` (default: `test`) that has no record answers NXDOMAIN; a
name with only addresses answers NODATA for MX (an implicit MX). dnsmasq comes from the
Debian package dnsmasq-base (`/usr/sbin/dnsmasq`).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import pytest

DNSMASQ_PATHS = ("/usr/sbin/dnsmasq", "/usr/bin/dnsmasq")
LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class MxHost:
    domain: str
    exchange: str
    preference: int


@dataclass(frozen=True)
class DnsRecords:
    mx: Sequence[MxHost] = ()
    # name -> IPv4 and IPv6 addresses (A and AAAA records).
    hosts: Mapping[str, Sequence[str]] = field(default_factory=dict)
    # Domains publishing the RFC 7505 null MX (`MX 0 .`).
    null_mx: Sequence[str] = ()
    # name -> TXT record texts (one record each).
    txt: Mapping[str, Sequence[str]] = field(default_factory=dict)
    local_domains: Sequence[str] = ("test",)
    ttl: int = 60


def find_dnsmasq() -> str | None:
    found = shutil.which("dnsmasq")
    if found:
        return found
    return next((path for path in DNSMASQ_PATHS if Path(path).exists()), None)


def _free_udp_and_tcp_port() -> int:
    """A port free for both UDP and TCP on loopback right now."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((LOOPBACK, 0))
            port = int(udp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind((LOOPBACK, port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free loopback port for dnsmasq")


def dnsmasq_arguments(records: DnsRecords, port: int) -> list[str]:
    arguments = [
        "--no-resolv",
        "--no-hosts",
        "--keep-in-foreground",
        f"--port={port}",
        f"--listen-address={LOOPBACK}",
        "--bind-interfaces",
        "--conf-file=/dev/null",
        "--pid-file=",
        "--user=root" if _running_as_root() else "",
        f"--local-ttl={records.ttl}",
        "--log-facility=-",
    ]
    arguments += [f"--local=/{domain}/" for domain in records.local_domains]
    arguments += [f"--mx-host={m.domain},{m.exchange},{m.preference}" for m in records.mx]
    arguments += [f"--mx-host={domain},.,0" for domain in records.null_mx]
    for name, texts in records.txt.items():
        # Unquoted (no shell): a comma would start another string of the record.
        arguments += [f"--txt-record={name},{text}" for text in texts]
    # One --host-record per address: a single record holds at most one IPv4 and one IPv6.
    for name, addresses in records.hosts.items():
        arguments += [f"--host-record={name},{address}" for address in addresses]
    return [argument for argument in arguments if argument]


def _running_as_root() -> bool:
    return os.geteuid() == 0


class DnsServer:
    """dnsmasq on a free loopback port (UDP and TCP) while the context is open."""

    def __init__(self, records: DnsRecords, *, startup_timeout: float = 10.0) -> None:
        self.records = records
        self.host = LOOPBACK
        self.port = 0
        self._startup_timeout = startup_timeout
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> tuple[str, int]:
        """(host, port): one entry of `MxResolver(nameservers=[...])`."""
        return self.host, self.port

    @property
    def nameserver(self) -> str:
        """`host:port`, as the CLI's `--nameserver` takes it."""
        return f"{self.host}:{self.port}"

    def start(self) -> DnsServer:
        binary = find_dnsmasq()
        if binary is None:
            raise RuntimeError("dnsmasq not found: apt-get install -y dnsmasq-base")
        for _ in range(5):
            self.port = _free_udp_and_tcp_port()
            self._process = subprocess.Popen(
                [binary, *dnsmasq_arguments(self.records, self.port)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            if self._wait_until_answering():
                return self
            self.stop()
        raise RuntimeError("dnsmasq did not start")

    def _wait_until_answering(self) -> bool:
        deadline = time.monotonic() + self._startup_timeout
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                return False  # e.g. the port was taken in the meantime
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return True
            except OSError:
                time.sleep(0.05)
        return False

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()

    def __enter__(self) -> DnsServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def dns_server_fixture(records: DnsRecords) -> Iterator[DnsServer]:
    """Body of a pytest fixture: `yield from dns_server_fixture(records)`."""
    if find_dnsmasq() is None:
        pytest.fail("dnsmasq not found: apt-get install -y dnsmasq-base")
    with DnsServer(records) as server:
        yield server
