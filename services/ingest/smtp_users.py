"""SMTP AUTH users: a file of `name:hash` lines, passwords stored only as salted scrypt hashes.

    # comment
    alice:scrypt$16384$8$1$<salt, base64>$<hash, base64>

`hash_password` makes such a hash; `python -m relaystream.ingest.smtp_users NAME` reads a
password from stdin and prints the line to add. pbkdf2_sha256 hashes
(`pbkdf2_sha256$<iterations>$<salt>$<hash>`) are accepted too, for hashes made elsewhere.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
_HASH_BYTES = 32
_SALT_BYTES = 16


class UsersFileError(ValueError):
    """The users file is unreadable or has a malformed line; the message says which."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """A storable scrypt hash of `password` (random salt unless given)."""
    salt = salt if salt is not None else os.urandom(_SALT_BYTES)
    digest = hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=_HASH_BYTES
    )
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def _check_hash(stored: str) -> None:
    """Raises ValueError unless `stored` is a hash this module can verify."""
    parts = stored.split("$")
    if parts[0] == "scrypt" and len(parts) == 6:
        n, r, p = (int(part) for part in parts[1:4])
        if n < 2 or n & (n - 1) or r < 1 or p < 1:
            raise ValueError("bad scrypt parameters")
    elif parts[0] == "pbkdf2_sha256" and len(parts) == 4:
        if int(parts[1]) < 1:
            raise ValueError("bad iteration count")
    else:
        raise ValueError("not a scrypt$... or pbkdf2_sha256$... hash")
    for encoded in parts[-2:]:
        base64.b64decode(encoded, validate=True)


def verify_password(stored: str, password: str) -> bool:
    """True if `password` matches the stored hash (constant-time comparison)."""
    parts = stored.split("$")
    salt, expected = base64.b64decode(parts[-2]), base64.b64decode(parts[-1])
    secret = password.encode("utf-8")
    if parts[0] == "scrypt":
        n, r, p = (int(part) for part in parts[1:4])
        # maxmem: scrypt needs 128 * n * r bytes; OpenSSL's default cap is 32 MiB.
        actual = hashlib.scrypt(
            secret, salt=salt, n=n, r=r, p=p, dklen=len(expected), maxmem=256 * n * r + 2**20
        )
    else:
        actual = hashlib.pbkdf2_hmac("sha256", secret, salt, int(parts[1]), len(expected))
    return hmac.compare_digest(actual, expected)


@dataclass(frozen=True)
class SmtpUsers:
    """The users who may AUTH, by name."""

    hashes: Mapping[str, str]

    @classmethod
    def load(cls, path: Path) -> SmtpUsers:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as error:
            raise UsersFileError(f"{path}: cannot read: {error.strerror}") from error
        hashes: dict[str, str] = {}
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            name, sep, stored = line.partition(":")
            try:
                if not sep or not name:
                    raise ValueError("expected name:hash")
                _check_hash(stored)
            except ValueError as error:
                # Never echo the line: it may be a password pasted by mistake.
                raise UsersFileError(f"{path}:{number}: {error}") from None
            hashes[name] = stored
        return cls(hashes)

    def __bool__(self) -> bool:
        return bool(self.hashes)

    def authenticate(self, name: str, password: str) -> bool:
        stored = self.hashes.get(name)
        if stored is None:
            # Spend the same time on unknown names so timing does not reveal which exist.
            verify_password(_UNKNOWN_USER_HASH, password)
            return False
        return verify_password(stored, password)


_UNKNOWN_USER_HASH = hash_password("", salt=b"\0" * _SALT_BYTES)


def main(argv: list[str]) -> int:
    if len(argv) != 1 or ":" in argv[0]:
        print("usage: python -m relaystream.ingest.smtp_users NAME < password", file=sys.stderr)
        return 2
    password = sys.stdin.readline().rstrip("\r\n")
    print(f"{argv[0]}:{hash_password(password)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
