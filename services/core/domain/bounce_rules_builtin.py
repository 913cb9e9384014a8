"""relaystream's own default bounce rules, in three tiers, each a KumoMTA rule set.

A rules file is a table keyed by class, so within one file the class order decides which of two
matching rules wins. Tiers keep that decision where it belongs: a provider's own wording says
more than its enhanced code (Gmail's `5.7.1 ... likely unsolicited mail` is spam content, not the
generic 5.7.1 "delivery not authorized"), and the code says more than loose words in the text.

1. `PROVIDER_PHRASES`: wording of Gmail, Microsoft (Outlook.com, Exchange Online), Yahoo/AOL,
   Apple iCloud, and the block lists they quote;
2. `ENHANCED_CODES`: RFC 3463 / IANA enhanced status codes;
3. `PLAIN_TEXT`: common wording for replies that carry no enhanced code.

The line matched is `code [x.y.z ]text` (SmtpResponse.to_single_line).
"""

from __future__ import annotations

from .bounce_class import RuleSet

# `^\d{3} ` then an enhanced code: a helper only for readability of the tables below.
_CODE = r"^\d{3} [45]\."

PROVIDER_PHRASES: RuleSet = {
    "TooManyRecipients": [
        r"(?i)too many recipients",
    ],
    "AuthenticationFailed": [
        # Gmail 5.7.26 / 5.7.27, Yahoo 5.7.9, Microsoft 5.7.509 and 5.7.515.
        r"(?i)\bunauthenticated\b",
        r"(?i)DMARC (verification|policy)|domain's DMARC",
        r"(?i)does not pass (SPF|DKIM|DMARC)",
        r"(?i)authenticate with (at least one of )?(either )?SPF or DKIM",
        r"(?i)SPF (check )?fail|DKIM (check )?fail",
    ],
    "SpamBlock": [
        # Reputation of the sending IP or domain, and the block lists providers cite.
        r"(?i)\b(spamhaus|spamcop|barracuda|sorbs|uceprotect)\b|proofpoint\.com/(dnsbl|\?ip)",
        r"(?i)\bblock ?list|black ?list|\bdnsbl\b|\brbl\b",
        r"(?i)low reputation|IP ?reputation|poor reputation",
        r"(?i)unusual rate of unsolicited mail",  # Gmail 4.7.28
        r"(?i)\[TS[S]?0[1-9]\]",  # Yahoo TSS01..TSS09 deferrals and blocks
        r"(?i)user complaints",  # Yahoo TSS04
        r"(?i)banned sending IP|traffic not accepted from this IP",  # Microsoft 5.7.606/5.7.708
        r"(?i)part of their network is on our block list",  # Outlook.com S3150
        r"(?i)\(S3140\)|\(S3150\)",
    ],
    "SpamContent": [
        r"(?i)likely unsolicited mail",  # Gmail 5.7.1
        r"(?i)content (identified|detected) as spam|identified as spam|rejected as spam",
        r"(?i)spam (content|message) (detected|rejected)|message (looks like|is) spam",
    ],
    "VirusRelated": [
        r"(?i)\b(virus|malware|infected|trojan)\b",
    ],
    "ProhibitedAttachment": [
        r"(?i)attachment.{0,40}(not allowed|prohibited|blocked)|blocked attachment",
    ],
    "ContentRelated": [
        r"(?i)content presents a potential security issue",  # Gmail 5.7.0 BlockedMessage
    ],
    "InactiveMailbox": [
        r"(?i)account (that you tried to reach )?is (disabled|inactive|suspended)",
        r"(?i)mailbox (is )?(disabled|inactive|suspended)",  # Yahoo 554.30
        r"(?i)account has been disabled",
    ],
    "QuotaIssues": [
        r"(?i)out of storage space|over ?quota|quota exceeded|mailbox (is )?full",
    ],
    "InvalidRecipient": [
        r"(?i)account that you tried to reach does not exist",  # Gmail 5.1.1
        r"(?i)doesn't have a (yahoo|aol|ymail)\.com account",  # Yahoo/AOL 554
        r"(?i)recipient address rejected: access denied",  # Exchange Online DBEB 5.4.1
        r"(?i)mailbox unavailable \(S2017",  # Outlook.com 5.5.0
        r"(?i)user does not exist|user unknown|unknown user|no such (user|mailbox|recipient)",
        r"(?i)recipient (address )?(unknown|not found|does not exist)|invalid recipient",
    ],
    "BadDomain": [
        r"(?i)DNS domain \S+ does not exist|InfoDomainNonexistent",  # Microsoft 5.4.310
        r"(?i)null MX",
    ],
    "DNSFailure": [
        r"MX lookup for \S+ failed|MX didn't resolve to any hosts",  # our own MX failures
    ],
    "TransientFailure": [
        r"scheduled queue is suspended",  # our (and KumoMTA's) suspension
        r"(?i)receiving mail at a rate that prevents",  # Gmail 4.2.1 ReceivingRate
        r"(?i)server busy|try again later|temporarily deferred",
    ],
    "PolicyRelated": [
        r"(?i)has a policy that prohibited the mail",  # Gmail 5.7.1
        r"(?i)not accepted for policy reasons|rejected due to local policy",  # Yahoo, Apple
        r"(?i)does not have a PTR record|reverse DNS",  # Gmail 5.7.25
    ],
    "RelayDenied": [
        r"(?i)relay(ing)? (access )?(denied|not permitted|prohibited)|unable to relay",
    ],
}

ENHANCED_CODES: RuleSet = {
    "InvalidRecipient": [
        _CODE + r"1\.[1345] ",
        _CODE + r"2\.4 ",
        _CODE + r"7\.17 ",
    ],
    "BadDomain": [
        _CODE + r"1\.(2|10) ",
        _CODE + r"7\.18 ",
    ],
    "InactiveMailbox": [
        _CODE + r"1\.6 ",
        _CODE + r"2\.1 ",
        _CODE + r"7\.13 ",
    ],
    "InvalidSender": [
        _CODE + r"1\.[78] ",
        _CODE + r"7\.27 ",
    ],
    "QuotaIssues": [
        _CODE + r"2\.[23] ",
        _CODE + r"3\.[14] ",
    ],
    "BadConfiguration": [
        _CODE + r"3\.[0235] ",
    ],
    "NoAnswerFromHost": [
        _CODE + r"4\.1 ",
    ],
    "BadConnection": [
        _CODE + r"4\.2 ",
    ],
    "DNSFailure": [
        _CODE + r"4\.3 ",
    ],
    "RoutingErrors": [
        _CODE + r"4\.[0468] ",
    ],
    "MessageExpired": [
        _CODE + r"4\.7 ",
    ],
    "TooManyRecipients": [
        _CODE + r"5\.3 ",
    ],
    "ProtocolErrors": [
        _CODE + r"5\.\d+ ",
    ],
    "ContentRelated": [
        _CODE + r"6\.\d+ ",
    ],
    "AuthenticationFailed": [
        _CODE + r"7\.(8|2[0-6]) ",
    ],
    "RelayDenied": [
        _CODE + r"7\.1 .*(?i:relay)",
    ],
    "PolicyRelated": [
        _CODE + r"7\.\d+ ",
    ],
    "TransientFailure": [
        r"^4\d{2} 4\.\d+\.\d+ ",
    ],
}

PLAIN_TEXT: RuleSet = {
    "BadConnection": [
        r"(?i)failed to connect|connection (refused|reset|dropped|lost|closed)",
    ],
    "NoAnswerFromHost": [
        r"(?i)timed out|no answer|no reply",
    ],
    "DNSFailure": [
        r"(?i)MX lookup|DNS|domain not found|host not found",
    ],
    "SpamRelated": [
        r"(?i)\bspam\b",
    ],
    "PolicyRelated": [
        r"(?i)\bpolicy\b|not authori[sz]ed|access denied|\bblocked\b",
    ],
    "TransientFailure": [
        r"^4\d{2} ",
    ],
}

BUILTIN_RULE_SETS: tuple[tuple[str, RuleSet], ...] = (
    ("builtin:provider-phrases", PROVIDER_PHRASES),
    ("builtin:enhanced-codes", ENHANCED_CODES),
    ("builtin:plain-text", PLAIN_TEXT),
)
