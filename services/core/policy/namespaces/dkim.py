"""kumo.dkim: DKIM signers (RSA-SHA256, Ed25519-SHA256) and msg:dkim_sign, with dkimpy.

A signer is its parameters, checked when the policy makes it (dkim.lua keeps them, as JSON,
out of the policy's reach); msg:dkim_sign signs the message as it is at that call and
prepends the DKIM-Signature field. Keys are loaded once and kept in a per-process cache by
key source and ttl (KumoMTA's dkim_key_cache; 300 s by default), so a policy that makes a
signer per message, as KumoMTA's examples do, reads its key file once per ttl.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dkim
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric import utils as asym_utils

from ...domain.durations import DurationError, parse_duration
from ...domain.egress_values import EgressConfigError, key_source
from ..host import MAX_DATA_FILE_BYTES, HostCallback, HostContext, HostError

RSA_SHA256 = "rsa-sha256"
ED25519_SHA256 = "ed25519-sha256"
CONSTRUCTORS = {RSA_SHA256: "rsa_sha256_signer", ED25519_SHA256: "ed25519_signer"}
DEFAULT_TTL_SECONDS = 300.0
KEY_CACHE_CAPACITY = 1024
CANONICALIZATIONS = {"relaxed": b"relaxed", "simple": b"simple"}
KNOWN_PARAMS = frozenset(
    (
        "domain",
        "selector",
        "headers",
        "key",
        "atps",
        "atpsh",
        "agent_user_identifier",
        "expiration",
        "body_length",
        "reporting",
        "header_canonicalization",
        "body_canonicalization",
        "ttl",
        "over_sign",
    )
)

dkim_log = logging.getLogger("relaystream.policy.dkim")


@dataclass(frozen=True, slots=True)
class KeySource:
    """Where a key comes from: a file (path as resolved) or data the policy passed."""

    path: Path | None
    data: bytes | None

    @property
    def cache_id(self) -> str:
        if self.path is not None:
            return f"file:{self.path}"
        return "data:" + hashlib.sha256(self.data or b"").hexdigest()

    def read(self) -> bytes:
        if self.data is not None:
            return self.data
        assert self.path is not None
        try:
            with self.path.open("rb") as stream:
                data = stream.read(MAX_DATA_FILE_BYTES + 1)
        except OSError as err:
            raise HostError(f"cannot read DKIM key {self.path}: {err.strerror or err}") from err
        if len(data) > MAX_DATA_FILE_BYTES:
            raise HostError(f"DKIM key {self.path}: larger than {MAX_DATA_FILE_BYTES} bytes")
        return data


@dataclass(frozen=True, slots=True)
class SignerSpec:
    algorithm: str
    domain: str
    selector: str
    headers: tuple[str, ...]
    key: KeySource
    ttl_seconds: float
    header_canonicalization: bytes = b"relaxed"
    body_canonicalization: bytes = b"relaxed"
    identity: str | None = None
    expiration_seconds: int | None = None
    body_length: bool = False
    reporting: bool = False
    atps: str | None = None
    atpsh: str | None = None
    over_sign: bool = False


def parse_signer(algorithm: str, params: object, context: HostContext) -> SignerSpec:
    """The checked parameters of kumo.dkim.<constructor>{...}."""
    where = f"kumo.dkim.{CONSTRUCTORS[algorithm]}"
    if not isinstance(params, dict):
        raise HostError(f"{where}: expected a table of parameters")
    unknown = sorted(set(params) - KNOWN_PARAMS)
    if unknown:
        raise HostError(f"{where}: unknown parameter(s) {', '.join(unknown)}")
    for required in ("domain", "selector", "headers", "key"):
        if params.get(required) is None:
            raise HostError(f"{where}: {required} is required")
    headers = params["headers"]
    if not isinstance(headers, list) or not all(isinstance(h, str) and h for h in headers):
        raise HostError(f"{where}: headers must be a list of header names")
    if not any(h.lower() == "from" for h in headers):
        raise HostError(f"{where}: headers must include From (RFC 6376 section 5.4)")
    return SignerSpec(
        algorithm=algorithm,
        domain=_text(where, params, "domain"),
        selector=_text(where, params, "selector"),
        headers=tuple(headers),
        key=_key_source(where, params["key"], context),
        ttl_seconds=_ttl(where, params.get("ttl")),
        header_canonicalization=_canonicalization(where, params, "header_canonicalization"),
        body_canonicalization=_canonicalization(where, params, "body_canonicalization"),
        identity=_optional_text(where, params, "agent_user_identifier"),
        expiration_seconds=_expiration(where, params.get("expiration")),
        body_length=_flag(where, params, "body_length"),
        reporting=_flag(where, params, "reporting"),
        atps=_optional_text(where, params, "atps"),
        atpsh=_optional_text(where, params, "atpsh"),
        over_sign=_flag(where, params, "over_sign"),
    )


def _text(where: str, params: Mapping[str, Any], name: str) -> str:
    value = params[name]
    if not isinstance(value, str) or not value:
        raise HostError(f"{where}: {name} must be a non-empty string")
    return value


def _optional_text(where: str, params: Mapping[str, Any], name: str) -> str | None:
    return None if params.get(name) is None else _text(where, params, name)


def _flag(where: str, params: Mapping[str, Any], name: str) -> bool:
    value = params.get(name, False)
    if not isinstance(value, bool):
        raise HostError(f"{where}: {name} must be true or false")
    return value


def _canonicalization(where: str, params: Mapping[str, Any], name: str) -> bytes:
    value = params.get(name, "Relaxed")
    if not isinstance(value, str) or value.lower() not in CANONICALIZATIONS:
        raise HostError(f"{where}: {name} must be 'Relaxed' or 'Simple', got {value!r}")
    return CANONICALIZATIONS[value.lower()]


def _ttl(where: str, value: object) -> float:
    if value is None:
        return DEFAULT_TTL_SECONDS
    try:
        return parse_duration(value).total_seconds()
    except DurationError as err:
        raise HostError(f"{where}: ttl: {err}") from err


def _expiration(where: str, value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise HostError(f"{where}: expiration must be a positive number of seconds")
    return int(value)


def _key_source(where: str, key: object, context: HostContext) -> KeySource:
    """A KumoMTA KeySource (its shapes are egress_values.key_source's): a file or key_data
    is read here; Vault and event sources are refused, relaystream fetches no secret."""
    try:
        checked = key_source(key)
    except EgressConfigError as err:
        raise HostError(f"{where}: key: {err}") from err
    if isinstance(checked, str):
        return KeySource(context.data_path(checked), None)
    assert isinstance(checked, dict)
    if "key_data" in checked:
        return KeySource(None, str(checked["key_data"]).encode("utf-8"))
    kind = "HashiCorp Vault" if "vault_mount" in checked else "an event"
    raise HostError(f"{where}: keys from {kind} are not available in relaystream")


@dataclass(frozen=True, slots=True)
class SigningKey:
    """A loaded key: as dkimpy takes it (PKCS#1 PEM for RSA, the base64 seed for Ed25519),
    and as OpenSSL holds it (RSA signatures are made there: see _Signer)."""

    dkimpy_form: bytes
    openssl: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


def load_key(algorithm: str, data: bytes, source: KeySource) -> SigningKey:
    """Accepts PEM or DER, PKCS#1 or PKCS#8, as KumoMTA does."""
    try:
        if b"-----BEGIN" in data:
            key = serialization.load_pem_private_key(data, password=None)
        else:
            key = serialization.load_der_private_key(data, password=None)
    except (ValueError, TypeError) as err:
        what = source.path or "key_data"
        raise HostError(f"DKIM key {what}: not a private key in PEM or DER form") from err
    if algorithm == RSA_SHA256 and isinstance(key, rsa.RSAPrivateKey):
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
        return SigningKey(pem, key)
    if algorithm == ED25519_SHA256 and isinstance(key, ed25519.Ed25519PrivateKey):
        seed = key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        return SigningKey(base64.b64encode(seed), key)
    what = source.path or "key_data"
    expected = "an RSA" if algorithm == RSA_SHA256 else "an Ed25519"
    raise HostError(f"DKIM key {what}: {CONSTRUCTORS[algorithm]} needs {expected} private key")


class KeyCache:
    """Loaded keys by (algorithm, key source, ttl), each kept for its ttl; least recently
    used first out beyond `capacity`. Shared by every policy of the process."""

    def __init__(self, capacity: int = KEY_CACHE_CAPACITY) -> None:
        self._capacity = capacity
        self._entries: OrderedDict[tuple[str, str, float], tuple[float, SigningKey]] = OrderedDict()
        self._lock = threading.Lock()
        self.loads = 0  # keys read and parsed (a miss), for tests and metrics

    def key(self, spec: SignerSpec) -> SigningKey:
        cache_key = (spec.algorithm, spec.key.cache_id, spec.ttl_seconds)
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(cache_key)
            if entry is not None and entry[0] > now:
                self._entries.move_to_end(cache_key)
                return entry[1]
        loaded = load_key(spec.algorithm, spec.key.read(), spec.key)
        with self._lock:
            self.loads += 1
            self._entries[cache_key] = (now + spec.ttl_seconds, loaded)
            self._entries.move_to_end(cache_key)
            while len(self._entries) > self._capacity:
                self._entries.popitem(last=False)
        return loaded


KEY_CACHE = KeyCache()


@dataclass(frozen=True, slots=True)
class _Signature:
    signature: bytes


@dataclass(frozen=True, slots=True)
class _OpenSslRsa:
    """An RSA key with the sign(digest).signature shape dkimpy uses for Ed25519 keys."""

    key: rsa.RSAPrivateKey

    def sign(self, digest: bytes) -> _Signature:
        return _Signature(
            self.key.sign(digest, padding.PKCS1v15(), asym_utils.Prehashed(hashes.SHA256()))
        )


class _Signer(dkim.DKIM):  # type: ignore[misc]
    """dkimpy's signer, with the tags it has no parameter for (x=, r=, atps=, atpsh=) added
    to the signature before it is computed, and RSA signatures made by OpenSSL: dkimpy's own
    RSA is Python integer arithmetic, about 6 ms per 2048-bit signature (OpenSSL: a tenth)."""

    extra_tags: list[tuple[bytes, bytes]] = []
    expiration_seconds: int | None = None
    rsa_key: rsa.RSAPrivateKey | None = None

    def gen_header(
        self,
        fields: list[tuple[bytes, bytes]],
        include_headers: Any,
        canon_policy: Any,
        header_name: bytes,
        pk: Any,
        standardize: bool = False,
    ) -> Any:
        extra = list(self.extra_tags)
        if self.expiration_seconds is not None:
            signed_at = int(dict(fields)[b"t"])
            extra.append((b"x", str(signed_at + self.expiration_seconds).encode("ascii")))
        position = next(i for i, (tag, _) in enumerate(fields) if tag == b"h")
        fields[position:position] = extra
        if self.rsa_key is None:
            return super().gen_header(
                fields, include_headers, canon_policy, header_name, pk, standardize
            )
        # dkimpy hands the SHA-256 digest to `pk.sign` on its Ed25519 branch; the a= tag is
        # already in `fields`, so taking that branch changes only who makes the signature.
        self.signature_algorithm = ED25519_SHA256.encode("ascii")
        try:
            return super().gen_header(
                fields,
                include_headers,
                canon_policy,
                header_name,
                _OpenSslRsa(self.rsa_key),
                standardize,
            )
        finally:
            self.signature_algorithm = RSA_SHA256.encode("ascii")


def effective_headers(spec: SignerSpec, present: list[str]) -> list[str]:
    """The h= list: as configured, or with over_sign each name once more than the message
    has it, so that no further instance can be added without breaking the signature."""
    if not spec.over_sign:
        return list(spec.headers)
    counts: dict[str, int] = {}
    for name in present:
        counts[name.lower()] = counts.get(name.lower(), 0) + 1
    names: list[str] = []
    seen: set[str] = set()
    for name in spec.headers:
        if name.lower() not in seen:
            seen.add(name.lower())
            names += [name] * (counts.get(name.lower(), 0) + 1)
    return names


def sign(spec: SignerSpec, message: bytes, present_headers: list[str], linesep: bytes) -> bytes:
    """The DKIM-Signature header field (with its line ending) for `message`."""
    key = KEY_CACHE.key(spec)
    signer = _Signer(message, signature_algorithm=spec.algorithm.encode("ascii"), linesep=linesep)
    if isinstance(key.openssl, rsa.RSAPrivateKey):
        signer.rsa_key = key.openssl
    # KumoMTA signs whatever the operator lists; dkimpy would refuse RFC 6376's SHOULD-NOTs.
    signer.should_not_sign = set()
    signer.expiration_seconds = spec.expiration_seconds
    extra: list[tuple[bytes, bytes]] = []
    if spec.reporting:
        extra.append((b"r", b"y"))
    if spec.atps is not None:
        extra.append((b"atps", spec.atps.encode("ascii")))
    if spec.atpsh is not None:
        extra.append((b"atpsh", spec.atpsh.encode("ascii")))
    signer.extra_tags = extra
    try:
        field: bytes = signer.sign(
            spec.selector.encode("ascii"),
            spec.domain.encode("ascii"),
            key.dkimpy_form,
            identity=spec.identity.encode("ascii") if spec.identity else None,
            canonicalize=(spec.header_canonicalization, spec.body_canonicalization),
            include_headers=[h.encode("ascii") for h in effective_headers(spec, present_headers)],
            length=spec.body_length,
        )
    except (dkim.DKIMException, UnicodeEncodeError) as err:
        raise HostError(f"msg:dkim_sign: {err}") from err
    return field


def host_callbacks(context: HostContext) -> Mapping[str, HostCallback]:
    def make_signer(algorithm: str, params_json: str) -> str:
        spec = parse_signer(algorithm, json.loads(params_json), context)
        try:
            KEY_CACHE.key(spec)  # a bad or missing key fails where the signer is made
        except HostError as err:
            raise HostError(f"kumo.dkim.{CONSTRUCTORS[algorithm]}: {err}") from err
        return params_json

    def dkim_sign(algorithm: str, params_json: str) -> None:
        state = context.message.current("dkim_sign")
        spec = parse_signer(algorithm, json.loads(params_json), context)
        data = state.data("dkim_sign")
        present = [name for name, _ in state.named_fields()]
        field = sign(spec, data, present, state.line_ending)
        state.add_field("dkim_sign", field, first=True)

    def set_signing_threads(count: object) -> None:
        dkim_log.info(
            "kumo.dkim.set_signing_threads(%s): accepted, no effect in relaystream: messages "
            "are signed in the policy call that asks for it",
            count,
        )

    return {
        "dkim_make_signer": make_signer,
        "dkim_sign": dkim_sign,
        "dkim_set_signing_threads": set_signing_threads,
    }
