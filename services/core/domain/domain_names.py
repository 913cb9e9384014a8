"""DNS names as the routing core compares them: lowercased ASCII (IDNA A-label) form.

KumoMTA normalizes names with a relaxed parser: ASCII labels are taken as written (so the
widely deployed `_` survives), labels with non-ASCII characters are converted with IDNA
(UTS #46 mapping). We do the same so queue names and site names agree with KumoMTA's.
"""

from __future__ import annotations

import re
from functools import lru_cache

import idna

MAX_LABEL_OCTETS = 63
MAX_NAME_OCTETS = 253

# Letters, digits, hyphen, and underscore (an extension KumoMTA accepts in mail domains).
_ASCII_LABEL = re.compile(r"[A-Za-z0-9_-]+")
# Mail concentrates on few domains, and routing normalizes each recipient's twice (about
# 10 µs a time): the names seen lately are kept. Errors are not cached; they are rare.
_RECENT_NAMES = 4096


class DomainNameError(ValueError):
    """A string that is not a usable DNS name."""


@lru_cache(maxsize=_RECENT_NAMES)
def to_ascii_domain(text: str) -> str:
    """`text` as a lowercased A-label DNS name without a trailing dot.

    Raises DomainNameError for empty names, empty labels, over-long labels or names, and
    characters no DNS host name can hold.
    """
    name = text[:-1] if text.endswith(".") else text
    if not name:
        raise DomainNameError(f"invalid domain name {text!r}: empty")
    labels: list[str] = []
    for label in name.split("."):
        labels.extend(_label_to_ascii(label, text))
    ascii_name = ".".join(labels)
    if len(ascii_name) > MAX_NAME_OCTETS:
        raise DomainNameError(f"invalid domain name {text!r}: longer than {MAX_NAME_OCTETS}")
    return ascii_name


def _label_to_ascii(label: str, whole: str) -> list[str]:
    if not label:
        raise DomainNameError(f"invalid domain name {whole!r}: empty label")
    if label.isascii():
        if not _ASCII_LABEL.fullmatch(label):
            raise DomainNameError(f"invalid domain name {whole!r}: bad character in {label!r}")
        converted = [label.lower()]
    else:
        try:
            encoded = idna.encode(label, uts46=True).decode("ascii")
        except (idna.IDNAError, UnicodeError, ValueError) as err:
            raise DomainNameError(f"invalid domain name {whole!r}: {err}") from err
        # UTS #46 maps some characters (e.g. the ideographic full stop) to ".".
        converted = [part.lower() for part in encoded.split(".")]
        if any(not part for part in converted):
            raise DomainNameError(f"invalid domain name {whole!r}: empty label")
    for part in converted:
        if len(part) > MAX_LABEL_OCTETS:
            raise DomainNameError(
                f"invalid domain name {whole!r}: label longer than {MAX_LABEL_OCTETS}"
            )
    return converted
