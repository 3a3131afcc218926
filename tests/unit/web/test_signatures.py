"""Standard Webhooks verification as Replicate signs: accept, reject, and never crash on garbage."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

import pytest

from bot.web.webhooks import SignatureError, WebhookVerifier

KEY = b"0123456789abcdef0123456789abcdef"
SECRET = "whsec_" + base64.b64encode(KEY).decode()
BODY = b'{"id":"p1","status":"succeeded"}'


def sign(body: bytes, msg_id: str = "msg_1", timestamp: int | None = None, key: bytes = KEY) -> dict[str, str]:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": ts,
        "webhook-signature": "v1," + base64.b64encode(digest).decode(),
    }


def test_accepts_a_valid_signature_among_several() -> None:
    headers = sign(BODY)
    headers["webhook-signature"] = "v2,abc v1,AAAA " + headers["webhook-signature"]
    WebhookVerifier(SECRET).verify(BODY, headers)


@pytest.mark.parametrize(
    "tamper",
    [
        lambda h, b: (h, b + b" "),  # body changed
        lambda h, b: ({**h, "webhook-id": "msg_2"}, b),  # id changed
        lambda h, b: (sign(b, key=b"wrong-key-wrong-key-wrong-key-00"), b),  # forged
        lambda h, b: (sign(b, timestamp=int(time.time()) - 301), b),  # stale (replayed later)
        lambda h, b: (sign(b, timestamp=int(time.time()) + 301), b),  # from the future
        lambda h, b: ({k: v for k, v in h.items() if k != "webhook-signature"}, b),  # unsigned
        lambda h, b: ({**h, "webhook-signature": "garbage"}, b),  # no comma
        lambda h, b: ({**h, "webhook-signature": "v1,%%%notbase64"}, b),
        lambda h, b: ({**h, "webhook-timestamp": "yesterday"}, b),
        lambda h, b: (h, b"\xff\xfe not utf-8"),
    ],
)
def test_rejects(tamper) -> None:
    headers, body = tamper(sign(BODY), BODY)
    with pytest.raises(SignatureError):
        WebhookVerifier(SECRET).verify(body, headers)
