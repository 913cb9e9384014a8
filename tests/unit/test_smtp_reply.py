"""SMTP reply parsing, enhanced status codes, and delivery classification."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relaystream.core.domain.smtp_reply import (
    EnhancedStatusCode,
    ReplyKind,
    SmtpReplyError,
    SmtpResponse,
    TooManyRecipients,
    classify_reply,
    split_enhanced_code,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2.0.1 w00t", (EnhancedStatusCode(2, 0, 1), "w00t")),
        ("3.0.0 w00t", (None, "3.0.0 w00t")),
        ("2.0.0.1 w00t", (None, "2.0.0.1 w00t")),
        ("2.0.0.1w00t", (None, "2.0.0.1w00t")),
        ("5.1.1", (None, "5.1.1")),
        ("4.7.65536 x", (None, "4.7.65536 x")),
    ],
)
def test_enhanced_codes(text: str, expected: tuple[EnhancedStatusCode | None, str]) -> None:
    assert split_enhanced_code(text) == expected


def test_single_line_reply() -> None:
    response = SmtpResponse.parse("550 5.1.1 No such user here\r\n", command="RCPT TO:<a@b>")
    assert response == SmtpResponse(
        550, EnhancedStatusCode(5, 1, 1), "No such user here", "RCPT TO:<a@b>"
    )
    assert response.to_single_line() == "550 5.1.1 No such user here"


def test_multi_line_reply_strips_repeated_enhanced_code() -> None:
    response = SmtpResponse.parse("452-4.5.3 Too many\r\n452-4.5.3 recipients\r\n452 try later\r\n")
    assert response.code == 452
    assert response.enhanced_code == EnhancedStatusCode(4, 5, 3)
    assert response.content == "Too many\nrecipients\ntry later"
    assert response.single_line_content == "Too many recipients try later"


@pytest.mark.parametrize(
    "text",
    ["", "25", "250", "2500 ok", "abc ok", "250-continued", "250-a\r\n251 b", "250 a\r\n250 b"],
)
def test_malformed_replies(text: str) -> None:
    with pytest.raises(SmtpReplyError):
        SmtpResponse.parse(text)


def test_dict_round_trip() -> None:
    response = SmtpResponse(421, EnhancedStatusCode(4, 3, 2), "closing\nnow", "DATA")
    as_dict = response.to_dict()
    assert as_dict == {
        "code": 421,
        "enhanced_code": {"class": 4, "subject": 3, "detail": 2},
        "content": "closing now",
        "command": "DATA",
    }
    assert SmtpResponse.from_dict(as_dict) == SmtpResponse(
        421, EnhancedStatusCode(4, 3, 2), "closing now", "DATA"
    )


RCPT = "RCPT TO:<user@example.com>"


@pytest.mark.parametrize(
    ("code", "enhanced", "command", "kind", "too_many"),
    [
        (250, (2, 0, 0), "DATA", ReplyKind.DELIVERY, TooManyRecipients.NO),
        (251, None, RCPT, ReplyKind.DELIVERY, TooManyRecipients.NO),
        (354, None, "DATA", ReplyKind.TRANSIENT_FAILURE, TooManyRecipients.NO),
        (421, (4, 3, 2), None, ReplyKind.TRANSIENT_FAILURE, TooManyRecipients.NO),
        (450, (4, 2, 1), RCPT, ReplyKind.TRANSIENT_FAILURE, TooManyRecipients.NO),
        (503, (5, 5, 1), "DATA", ReplyKind.TRANSIENT_FAILURE, TooManyRecipients.NO),
        (452, None, RCPT, ReplyKind.TRANSIENT_FAILURE, TooManyRecipients.MAYBE),
        (552, None, RCPT, ReplyKind.TRANSIENT_FAILURE, TooManyRecipients.MAYBE),
        (552, None, "DATA", ReplyKind.BOUNCE, TooManyRecipients.NO),
        (451, (4, 5, 3), RCPT, ReplyKind.TRANSIENT_FAILURE, TooManyRecipients.YES),
        (550, (4, 5, 3), RCPT, ReplyKind.TRANSIENT_FAILURE, TooManyRecipients.YES),
        # KumoMTA matches only the 4.5.3 enhanced code.
        (552, (5, 5, 3), RCPT, ReplyKind.BOUNCE, TooManyRecipients.NO),
        (550, (5, 1, 1), RCPT, ReplyKind.BOUNCE, TooManyRecipients.NO),
        (554, None, "DATA", ReplyKind.BOUNCE, TooManyRecipients.NO),
        (199, None, None, ReplyKind.BOUNCE, TooManyRecipients.NO),
    ],
)
def test_classification(
    code: int,
    enhanced: tuple[int, int, int] | None,
    command: str | None,
    kind: ReplyKind,
    too_many: TooManyRecipients,
) -> None:
    response = SmtpResponse(
        code, None if enhanced is None else EnhancedStatusCode(*enhanced), "x", command
    )
    classification = classify_reply(response)
    assert classification.kind is kind
    assert classification.too_many_recipients is too_many
    assert classification.closes_connection is (code == 421)


@given(st.integers(200, 599), st.text(max_size=40))
def test_parse_of_rendered_single_line(code: int, content: str) -> None:
    content = content.replace("\r", "").replace("\n", "")
    response = SmtpResponse.parse(f"{code} {content}")
    assert response.code == code
    assert response.to_single_line() == f"{code} {content}"
