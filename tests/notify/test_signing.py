"""Webhook signatures: HMAC-SHA256 of "{timestamp}.{body}", hex; any change to the secret, timestamp or
body breaks it, and an old timestamp is refused."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from modelyard.notify.signing import new_secret, sign, verify

SECRET, STAMP, BODY = "whsec_test", 1_765_000_000, b'{"id":"7","type":"run.succeeded"}'


def test_the_signature_is_the_hmac_of_timestamp_dot_body() -> None:
    expected = hmac.new(SECRET.encode(), b"1765000000." + BODY, hashlib.sha256).hexdigest()
    assert sign(SECRET, STAMP, BODY) == expected
    assert verify(SECRET, STAMP, BODY, expected, now=STAMP + 10)


@pytest.mark.parametrize(
    ("secret", "stamp", "body", "now"),
    [
        ("whsec_other", STAMP, BODY, STAMP),  # another secret
        (SECRET, STAMP + 1, BODY, STAMP),  # another timestamp
        (SECRET, STAMP, BODY + b" ", STAMP),  # another body
        (SECRET, STAMP, BODY, STAMP + 301),  # too old: a replay
    ],
)
def test_any_change_or_an_old_timestamp_fails_verification(
    secret: str, stamp: int, body: bytes, now: int
) -> None:
    assert not verify(secret, stamp, body, sign(SECRET, STAMP, BODY), now=now)


def test_secrets_are_fresh_and_long() -> None:
    secrets = {new_secret() for _ in range(100)}
    assert len(secrets) == 100 and all(s.startswith("whsec_") and len(s) >= 48 for s in secrets)
