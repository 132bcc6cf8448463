"""The identity of a request for deduplication: fixed bytes, 16 of them, and every field in it."""

from __future__ import annotations

from tidegate.intake import request_hash


def test_the_identity_is_stable_across_releases() -> None:
    # A stored identity (tidegate_accepted_requests, spool records) must keep matching.
    assert request_hash("metrics", "default", b"abc").hex() == "7cc89c3e3b423f67649c36fc8b742cfa"


def test_signal_tenant_and_every_byte_count() -> None:
    request = bytes(range(256)) * 1000
    base = request_hash("metrics", "acme", request)
    others = {
        request_hash("traces", "acme", request),
        request_hash("metrics", "globex", request),
        request_hash("metrics", "acme", request[:-1]),
        request_hash("metrics", "acme", request[:-1] + b"\x00"),
        request_hash("metrics", "acme", b""),
        # The fields are separated: moving a byte across the boundary changes the identity.
        request_hash("metrics", "acm", b"e" + request),
    }
    assert len(base) == 16
    assert base not in others
    assert len(others) == 6
    assert request_hash("metrics", "acme", bytes(request)) == base
