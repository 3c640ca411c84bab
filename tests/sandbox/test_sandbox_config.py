"""SandboxConfig parsing and run-time updates, callback planning and fault draws (no sockets)."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest

from smsgw.errors import SettingsError
from smsgw.sandbox.config import SandboxConfig
from smsgw.sandbox.delivery import plan
from smsgw.sandbox.faults import Fault, draw_fault


def test_defaults_from_an_empty_environment() -> None:
    config = SandboxConfig.from_env({})
    assert (config.host, config.port, config.api_key.reveal()) == ("127.0.0.1", 8081, "sandbox-key")
    assert dict(config.brands) == {1: "SMSGW", 2: "Shop"}
    assert (config.balance, config.callback_url, config.callback_key.reveal()) == (1_000_000, None, "")
    assert (config.callback_delay, dict(config.outcomes)) == (0.2, {"delivered": 1.0})
    assert (config.sent_first, config.pending_first, config.seed) == (True, False, None)
    rates = (
        config.duplicate_rate,
        config.reorder_rate,
        config.latency,
        config.error_rate,
        config.stall_rate,
        config.accept_error_rate,
        config.drop_rate,
    )
    assert rates == (0, 0, 0, 0, 0, 0, 0)


def test_every_variable_is_read() -> None:
    env = {
        "SMSGW_SANDBOX_HOST": "0.0.0.0",
        "SMSGW_SANDBOX_PORT": "0",
        "SMSGW_SANDBOX_API_KEY": "k",
        "SMSGW_SANDBOX_BRANDS": "3:A, 4:B c",
        "SMSGW_SANDBOX_BALANCE": "5",
        "SMSGW_SANDBOX_CALLBACK_URL": "https://gw.example/cb?x=1",
        "SMSGW_SANDBOX_CALLBACK_KEY": "ck",
        "SMSGW_SANDBOX_CALLBACK_DELAY": "1.5",
        "SMSGW_SANDBOX_OUTCOMES": "delivered=0.9,failed=0.05,error=0.05",
        "SMSGW_SANDBOX_SENT_FIRST": "false",
        "SMSGW_SANDBOX_PENDING_FIRST": "TRUE",
        "SMSGW_SANDBOX_DUPLICATE_RATE": "0.1",
        "SMSGW_SANDBOX_REORDER_RATE": "0.2",
        "SMSGW_SANDBOX_LATENCY": "0.05",
        "SMSGW_SANDBOX_ERROR_RATE": "0.1",
        "SMSGW_SANDBOX_STALL_RATE": "0.1",
        "SMSGW_SANDBOX_ACCEPT_ERROR_RATE": "0.1",
        "SMSGW_SANDBOX_DROP_RATE": "0.1",
        "SMSGW_SANDBOX_SEED": "42",
    }
    config = SandboxConfig.from_env(env)
    assert (config.host, config.port, config.api_key.reveal(), dict(config.brands)) == (
        "0.0.0.0",
        0,
        "k",
        {3: "A", 4: "B c"},
    )
    assert (config.balance, config.callback_url, config.callback_key.reveal()) == (
        5,
        env["SMSGW_SANDBOX_CALLBACK_URL"],
        "ck",
    )
    assert dict(config.outcomes) == {"delivered": 0.9, "failed": 0.05, "error": 0.05}
    assert (config.callback_delay, config.sent_first, config.pending_first) == (1.5, False, True)
    assert (config.duplicate_rate, config.reorder_rate, config.latency) == (0.1, 0.2, 0.05)
    assert (config.error_rate, config.stall_rate, config.accept_error_rate, config.drop_rate) == (0.1,) * 4
    assert config.seed == 42
    assert SandboxConfig.unknown_names(env) == []


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PORT", "http"),
        ("PORT", "70000"),
        ("BRANDS", "SMSGW"),
        ("BRANDS", "x:SMSGW"),
        ("BRANDS", "1:A,1:B"),
        ("BRANDS", "1:"),
        ("BALANCE", "-1"),
        ("CALLBACK_URL", "gw.example/cb"),
        ("CALLBACK_DELAY", "soon"),
        ("OUTCOMES", "delivered"),
        ("OUTCOMES", "bounced=1"),
        ("OUTCOMES", "delivered=0"),
        ("OUTCOMES", "delivered=-1,failed=2"),
        ("SENT_FIRST", "yes"),
        ("DUPLICATE_RATE", "1.5"),
        ("LATENCY", "nan"),
        ("ERROR_RATE", "-0.1"),
        ("SEED", "x"),
    ],
)
def test_a_bad_value_names_its_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=f"^SMSGW_SANDBOX_{name}: ") as info:
        SandboxConfig.from_env({f"SMSGW_SANDBOX_{name}": value})
    assert "\n" not in str(info.value)


def test_fault_rates_must_fit_in_one() -> None:
    with pytest.raises(SettingsError, match=r"SMSGW_SANDBOX_STALL_RATE.*at most 1"):
        SandboxConfig.from_env({"SMSGW_SANDBOX_ERROR_RATE": "0.7", "SMSGW_SANDBOX_DROP_RATE": "0.4"})


def test_blank_values_keep_defaults_and_unknown_names_are_listed() -> None:
    env = {"SMSGW_SANDBOX_PORT": " ", "SMSGW_SANDBOX_LATENCE": "1", "SMSGW_PORT": "1"}
    assert SandboxConfig.from_env(env).port == 8081
    assert SandboxConfig.unknown_names(env) == ["SMSGW_SANDBOX_LATENCE"]


def test_keys_never_show_in_repr_or_public_view() -> None:
    env = {"SMSGW_SANDBOX_API_KEY": "api-secret", "SMSGW_SANDBOX_CALLBACK_KEY": "cb-secret"}
    config = SandboxConfig.from_env(env)
    for text in (repr(config), str(config.public())):
        assert "api-secret" not in text
        assert "cb-secret" not in text
    assert config.public()["callback_key_set"] is True
    assert "api_key" not in config.public()


def test_update_returns_a_changed_copy() -> None:
    config = SandboxConfig()
    updated = config.update(
        {
            "latency": 0.5,
            "outcomes": {"failed": 2},
            "pending_first": True,
            "callback_url": "http://x/cb",
            "brands": {"5": "New"},
        }
    )
    assert (updated.latency, dict(updated.outcomes), updated.pending_first) == (0.5, {"failed": 2.0}, True)
    assert (updated.callback_url, dict(updated.brands)) == ("http://x/cb", {5: "New"})
    assert config.latency == 0
    assert updated.update({"callback_url": None}).callback_url is None


def test_unapproved_brands_from_env_and_at_run_time() -> None:
    config = SandboxConfig.from_env({"SMSGW_SANDBOX_UNAPPROVED_BRANDS": "2, 9"})
    assert config.unapproved_brands == {2, 9}
    assert config.public()["unapproved_brands"] == [2, 9]
    assert config.update({"unapproved_brands": [3]}).unapproved_brands == {3}
    assert config.update({"unapproved_brands": ""}).unapproved_brands == frozenset()
    with pytest.raises(SettingsError, match=r"^SMSGW_SANDBOX_UNAPPROVED_BRANDS: "):
        SandboxConfig.from_env({"SMSGW_SANDBOX_UNAPPROVED_BRANDS": "two"})


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"latency": True}, "^latency: expected a number"),
        ({"unapproved_brands": {"a": 1}}, "^unapproved_brands: expected ids"),
        ({"drop_rate": 1.01}, "^drop_rate: must be between 0 and 1"),
        ({"balance": 1.5}, "^balance: expected an integer"),
        ({"callback_key": 5}, "^callback_key: expected a string$"),
        ({"seed": 1}, "^seed: unknown or not changeable"),
        ({"error_rate": 0.5, "stall_rate": 0.6}, "at most 1"),
    ],
)
def test_update_rejects_with_the_field_name(patch: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SandboxConfig().update(patch)


def test_plan_follows_the_knobs() -> None:
    rng = random.Random(1)
    assert plan(SandboxConfig(), rng) == (0, 1)
    assert plan(SandboxConfig(sent_first=False, outcomes={"error": 1}), rng) == (4,)
    assert plan(SandboxConfig(pending_first=True), rng) == (0, 3, 1)
    assert plan(SandboxConfig(pending_first=True, reorder_rate=1), rng) == (1, 3, 0)
    assert plan(SandboxConfig(duplicate_rate=1, outcomes={"failed": 1}), rng) == (0, 0, 2, 2)


def test_plan_draws_outcomes_by_weight() -> None:
    rng = random.Random(2)
    config = SandboxConfig(sent_first=False, outcomes={"delivered": 0.8, "failed": 0.1, "error": 0.1})
    finals = Counter(plan(config, rng)[0] for _ in range(5000))
    assert set(finals) == {1, 2, 4}
    assert 3700 < finals[1] < 4300
    assert 350 < finals[2] < 650


def test_fault_draw_gives_exact_shares() -> None:
    rng = random.Random(3)
    config = SandboxConfig(stall_rate=0.1, error_rate=0.2, accept_error_rate=0.3, drop_rate=0.4)
    draws = Counter(draw_fault(config, rng) for _ in range(10_000))
    assert None not in draws
    shares: list[tuple[Fault, float]] = [("stall", 0.1), ("error", 0.2), ("accept_error", 0.3), ("drop", 0.4)]
    for fault, share in shares:
        assert abs(draws[fault] / 10_000 - share) < 0.03
    assert draw_fault(SandboxConfig(), rng) is None
