"""API keys: their format, what is stored of them, and how a request's metadata is turned into
a tenant or refused."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import re

import pytest

from tidegate import api_keys
from tidegate.api_keys import ApiKeys, StoredKey, check_tenant, key_hash, new_key
from tidegate.config import DEFAULT_TENANT
from tidegate.errors import AuthenticationError, ConfigError, TenantNameError

ACME_ID, ACME_KEY = new_key()
OLD_ID, OLD_KEY = new_key()


@pytest.fixture
def directory() -> ApiKeys:
    return ApiKeys(
        [
            StoredKey(ACME_ID, "acme", key_hash(ACME_KEY), revoked=False),
            StoredKey(OLD_ID, "acme", key_hash(OLD_KEY), revoked=True),
        ]
    )


def bearer(key: str) -> list[tuple[str, str | bytes]]:
    return [("user-agent", "test"), ("authorization", f"Bearer {key}")]


def test_key_format() -> None:
    key_id, key = new_key()
    match = re.fullmatch(r"tg_([0-9a-f]{12})_([A-Za-z0-9_-]{43})", key)
    assert match is not None
    assert match[1] == key_id
    assert len(base64.urlsafe_b64decode(match[2] + "=")) == 32
    assert new_key() != new_key()


def test_only_the_sha256_of_the_whole_key_is_kept() -> None:
    assert key_hash(ACME_KEY) == hashlib.sha256(ACME_KEY.encode()).digest()


@pytest.mark.parametrize("required", [False, True])
def test_valid_key_names_its_tenant(directory: ApiKeys, required: bool) -> None:
    assert directory.authenticate(bearer(ACME_KEY), required=required) == "acme"
    # The scheme is case-insensitive; values may come as bytes (binary metadata).
    assert directory.authenticate([("authorization", f"bEaReR {ACME_KEY}")], required=True)
    assert directory.authenticate([("authorization", f"Bearer {ACME_KEY}".encode())], required=True)
    assert directory.authenticate_header(f"Bearer  {ACME_KEY} ", required=required) == "acme"


@pytest.mark.parametrize("metadata", [None, (), [("user-agent", "x")], [("authorization", " ")]])
def test_no_key_is_the_default_tenant_unless_keys_are_required(
    directory: ApiKeys, metadata: list[tuple[str, str | bytes]] | None
) -> None:
    assert directory.authenticate(metadata, required=False) == DEFAULT_TENANT
    with pytest.raises(AuthenticationError) as raised:
        directory.authenticate(metadata, required=True)
    assert str(raised.value) == "missing API key: send 'authorization: Bearer <key>'"


def wrong_secret(key: str) -> str:
    return key[:-1] + ("A" if key[-1] != "A" else "B")


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (f"Basic {ACME_KEY}", api_keys.MALFORMED),
        (ACME_KEY, api_keys.MALFORMED),  # no scheme
        ("Bearer", api_keys.MALFORMED),
        ("Bearer tg_123", api_keys.MALFORMED),
        (f"Bearer {ACME_KEY}x", api_keys.MALFORMED),
        (f"Bearer {ACME_KEY.upper()}", api_keys.MALFORMED),  # the id is lowercase hex
        (f"Bearer {wrong_secret(ACME_KEY)}", "invalid API key"),
        (f"Bearer tg_000000000000_{ACME_KEY[16:]}", "invalid API key"),  # unknown id
        (f"Bearer {OLD_KEY}", f"API key {OLD_ID} was revoked"),
    ],
)
@pytest.mark.parametrize("required", [False, True])
def test_a_presented_key_is_always_checked(
    directory: ApiKeys, header: str, message: str, required: bool
) -> None:
    with pytest.raises(AuthenticationError) as raised:
        directory.authenticate([("authorization", header)], required=required)
    assert str(raised.value) == message
    secret = ACME_KEY.split("_", 2)[2]  # tg_<id>_<secret>; the secret may hold "_"
    assert secret[:8] not in str(raised.value)
    assert OLD_KEY.split("_", 2)[2][:8] not in str(raised.value)


def test_a_revoked_key_with_a_wrong_secret_is_just_invalid(directory: ApiKeys) -> None:
    with pytest.raises(AuthenticationError, match=r"^invalid API key$"):
        directory.authenticate_header(f"Bearer {wrong_secret(OLD_KEY)}", required=False)


def test_non_ascii_binary_metadata_is_malformed(directory: ApiKeys) -> None:
    with pytest.raises(AuthenticationError, match=r"^invalid API key: send"):
        directory.authenticate([("authorization", b"Bearer \xff")], required=False)


def test_unknown_id_does_the_same_hash_and_comparison_work(
    directory: ApiKeys, monkeypatch: pytest.MonkeyPatch
) -> None:
    compared: list[tuple[bytes, bytes]] = []
    compare = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return compare(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)  # the module api_keys calls
    unknown = f"tg_{'0' * 12}_{ACME_KEY[16:]}"
    for key in (unknown, wrong_secret(ACME_KEY), ACME_KEY):
        with contextlib.suppress(AuthenticationError):
            directory.authenticate_header(f"Bearer {key}", required=True)
    assert [presented for presented, _ in compared] == [
        key_hash(unknown),
        key_hash(wrong_secret(ACME_KEY)),
        key_hash(ACME_KEY),
    ]
    expected = [stored for _, stored in compared]
    assert expected == [api_keys._NO_SUCH_KEY, key_hash(ACME_KEY), key_hash(ACME_KEY)]
    assert all(len(stored) == 32 for stored in expected)  # same length: same comparison work


@pytest.mark.parametrize("name", ["a", "acme", "team-7_x", "0", "a" * 63])
def test_valid_tenant_names(name: str) -> None:
    assert check_tenant(name) == name


@pytest.mark.parametrize("name", ["", "Acme", "-acme", "_a", "a" * 64, "a b", "a.b", "ü", "a\n"])
def test_invalid_tenant_names(name: str) -> None:
    with pytest.raises(TenantNameError, match="invalid tenant name") as raised:
        check_tenant(name)
    assert isinstance(raised.value, ConfigError)
