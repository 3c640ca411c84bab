"""Sealing: AES-256-GCM with key ids (rotation), bound to what it seals; and the SMSGW_VERIFY_* settings."""

from __future__ import annotations

import pytest

from smsgw.errors import SettingsError
from smsgw.settings import Settings, unknown_names
from smsgw.verify.config import Limit
from smsgw.verify.sealing import (
    Keyring,
    SealError,
    code_context,
    derive_key,
    open_sms_text,
    seal_sms_text,
)

OLD, NEW = "old-secret-0123456789abcdef", "new-secret-fedcba9876543210"


def test_a_sealed_code_opens_only_as_that_verifications_code() -> None:
    ring = Keyring([derive_key(NEW)])
    sealed = ring.seal("482913", code_context("ver_1"))
    assert "482913" not in sealed
    assert ring.open(sealed, code_context("ver_1")) == "482913"
    with pytest.raises(SealError):
        ring.open(sealed, code_context("ver_2"))
    with pytest.raises(SealError):
        open_sms_text(ring, sealed)  # not as an SMS text either


def test_sealing_is_randomised() -> None:
    ring = Keyring([derive_key(NEW)])
    assert ring.seal("482913", "x") != ring.seal("482913", "x")


def test_rotation_opens_what_previous_secrets_sealed_and_seals_with_the_first() -> None:
    before = Keyring([derive_key(OLD)])
    after = Keyring([derive_key(NEW), derive_key(OLD)])
    sealed = before.seal("1234", "c")
    assert after.open(sealed, "c") == "1234"
    assert after.seal("1234", "c").split(".")[0] == derive_key(NEW).kid
    with pytest.raises(SealError, match="not configured"):
        Keyring([derive_key(NEW)]).open(sealed, "c")  # the old secret removed too early


@pytest.mark.parametrize(
    "damage", [lambda s: s[:-2] + "AA", lambda s: s.replace(".", ".x"), lambda s: s + "%"]
)
def test_tampered_values_do_not_open(damage: object) -> None:
    ring = Keyring([derive_key(NEW)])
    sealed = ring.seal("1234", "c")
    with pytest.raises(SealError):
        ring.open(damage(sealed), "c")  # type: ignore[operator]


def test_sms_texts_round_trip_and_open_only_as_sms_texts() -> None:
    ring = Keyring([derive_key(NEW)])
    text = "482913 is your verification code. Do not share it with anyone."
    sealed = seal_sms_text(ring, text)
    assert "482913" not in sealed
    assert open_sms_text(ring, sealed) == text
    with pytest.raises(SealError):
        ring.open(sealed, code_context("ver_1"))  # an SMS text never opens as a code


def test_keys_never_show_themselves() -> None:
    key = derive_key(NEW)
    assert key.key.hex() not in repr(key)
    assert NEW not in repr(Keyring([key]))
    settings = Settings.from_env({"SMSGW_VERIFY_SECRETS": NEW})
    assert NEW not in repr(settings)
    assert key.key.hex() not in repr(settings)


def test_default_key_is_derived_from_the_callback_key_but_is_not_it() -> None:
    settings = Settings.from_env({"SMSGW_CALLBACK_KEY": "callback-key-123"})
    assert settings.verify.key_source == "callback_key"
    (key,) = settings.verify.keys
    assert key != derive_key("callback-key-123")
    assert settings.verify.keyring.open(settings.verify.keyring.seal("1", "c"), "c") == "1"
    explicit = Settings.from_env(
        {"SMSGW_CALLBACK_KEY": "callback-key-123", "SMSGW_VERIFY_SECRETS": f"{NEW},{OLD}"}
    )
    assert explicit.verify.key_source == "secrets"
    assert [k.kid for k in explicit.verify.keys] == [derive_key(NEW).kid, derive_key(OLD).kid]
    assert Settings.from_env({}).verify.key_source == "none"


def test_settings_defaults_follow_the_contract() -> None:
    v = Settings.from_env({}).verify
    assert (v.number_limit, v.prefix_limit, v.client_limit) == (
        Limit(5, 3600),
        Limit(100, 3600),
        Limit(10_000, 3600),
    )
    assert (v.guard_min_started, v.guard_window, v.guard_min_conversion, v.guard_block) == (
        20,
        600,
        0.10,
        900,
    )
    assert (v.resend_cooldown, v.max_sends, v.max_attempts) == (30, 5, 5)
    assert v.safe_numbers == frozenset()


def test_settings_are_read() -> None:
    v = Settings.from_env(
        {
            "SMSGW_VERIFY_NUMBER_LIMIT": "3/600",
            "SMSGW_VERIFY_PREFIX_LIMIT": "0/60",
            "SMSGW_VERIFY_SAFE_NUMBERS": "+995 591 00 00 01, 00995591000002",
            "SMSGW_VERIFY_BRAND_NAMES": '{"1": "  Acme   Bank "}',
            "SMSGW_VERIFY_GUARD_MIN_CONVERSION": "0.25",
        }
    ).verify
    assert (v.number_limit, v.prefix_limit) == (Limit(3, 600), Limit(0, 60))
    assert v.safe_numbers == frozenset({"995591000001", "995591000002"})
    assert (v.brand_name(1), v.brand_name(2)) == ("Acme Bank", None)
    assert v.guard_min_conversion == 0.25
    assert unknown_names({"SMSGW_VERIFY_SECRETS": "x", "SMSGW_VERIFY_SECRET": "typo"}) == [
        "SMSGW_VERIFY_SECRET"
    ]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SMSGW_VERIFY_SECRETS", "short"),
        ("SMSGW_VERIFY_SECRETS", f"{NEW},{NEW}"),
        ("SMSGW_VERIFY_NUMBER_LIMIT", "5"),
        ("SMSGW_VERIFY_NUMBER_LIMIT", "5/0"),
        ("SMSGW_VERIFY_NUMBER_LIMIT", "-1/60"),
        ("SMSGW_VERIFY_SAFE_NUMBERS", "12345"),
        ("SMSGW_VERIFY_BRAND_NAMES", '["Acme"]'),
        ("SMSGW_VERIFY_BRAND_NAMES", '{"x": "Acme"}'),
        ("SMSGW_VERIFY_BRAND_NAMES", '{"1": "' + "A" * 41 + '"}'),
        ("SMSGW_VERIFY_GUARD_MIN_CONVERSION", "1.5"),
        ("SMSGW_VERIFY_MAX_ATTEMPTS", "0"),
    ],
)
def test_bad_settings_stop_the_process_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})


def test_a_bad_secret_is_not_echoed() -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env({"SMSGW_VERIFY_SECRETS": "tiny-secret"})
    assert "tiny-secret" not in str(info.value)
