"""Settings from files: ``SMSGW_<NAME>_FILE=/path`` instead of the variable, for secrets mounted as files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from smsgw.devtools.redis import free_port
from smsgw.errors import SettingsError
from smsgw.settings import Settings, unknown_names
from tests.harness import (
    CALLBACK_KEY,
    CLIENTS,
    TOKENS,
    UBILL_KEY,
    Stack,
    answers_200,
    astop,
    eventually,
    spawn,
)

SECRETS = {
    "SMSGW_UBILL_API_KEY": "ubill_api_key",
    "SMSGW_CALLBACK_KEY": "callback_key",
    "SMSGW_REDIS_PASSWORD": "redis_password",
    "SMSGW_REDIS_SENTINEL_PASSWORD": "redis_sentinel_password",
}


def write(tmp_path: Path, name: str, content: str | bytes) -> str:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return str(path)


@pytest.mark.parametrize(("variable", "field"), sorted(SECRETS.items()))
@pytest.mark.parametrize("ending", ["", "\n", "\r\n"])
def test_every_secret_reads_from_its_file_without_the_trailing_newline(
    tmp_path: Path, variable: str, field: str, ending: str
) -> None:
    path = write(tmp_path, "secret", f"s3cret with spaces{ending}")
    settings = Settings.from_env({f"{variable}_FILE": path})
    assert getattr(settings, field).reveal() == "s3cret with spaces"
    assert getattr(settings, field) == getattr(Settings.from_env({variable: "s3cret with spaces"}), field)


def test_clients_and_redis_url_read_from_files(tmp_path: Path) -> None:
    clients = write(tmp_path, "clients.json", json.dumps(CLIENTS) + "\n")
    url = write(tmp_path, "url", "redis://:pw@redis.example:6379/2\n")
    settings = Settings.from_env({"SMSGW_CLIENTS_FILE": clients, "SMSGW_REDIS_URL_FILE": url})
    assert [c.name for c in settings.clients] == [c["name"] for c in CLIENTS]
    assert settings.redis_url == "redis://:pw@redis.example:6379/2"


def test_any_setting_reads_from_a_file_and_is_checked_like_the_variable(tmp_path: Path) -> None:
    """The mechanism is generic: a future secret setting gets it without code of its own."""
    assert Settings.from_env({"SMSGW_HTTP_PORT_FILE": write(tmp_path, "port", "8181\n")}).http_port == 8181
    with pytest.raises(SettingsError, match=r"^SMSGW_HTTP_PORT: expected an integer"):
        Settings.from_env({"SMSGW_HTTP_PORT_FILE": write(tmp_path, "bad", "eighty\n")})


def test_both_the_variable_and_its_file_is_an_error_naming_both(tmp_path: Path) -> None:
    path = write(tmp_path, "key", "from-file")
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"SMSGW_CALLBACK_KEY": "from-env", "SMSGW_CALLBACK_KEY_FILE": path})
    message = str(caught.value)
    assert "SMSGW_CALLBACK_KEY and SMSGW_CALLBACK_KEY_FILE are both set" in message
    assert "from-env" not in message and "from-file" not in message


def test_an_empty_variable_beside_its_file_is_not_a_conflict(tmp_path: Path) -> None:
    """As everywhere in the settings, an empty variable counts as unset (compose files often pass them)."""
    path = write(tmp_path, "key", "from-file")
    settings = Settings.from_env({"SMSGW_CALLBACK_KEY": " ", "SMSGW_CALLBACK_KEY_FILE": path})
    assert settings.callback_key.reveal() == "from-file"


@pytest.mark.parametrize(
    ("target", "problem"),
    [("missing", "No such file or directory"), ("a-directory", "Is a directory"), ("latin1", "not UTF-8")],
)
def test_an_unreadable_file_is_an_error_naming_the_variable_and_path(
    tmp_path: Path, target: str, problem: str
) -> None:
    (tmp_path / "a-directory").mkdir()
    write(tmp_path, "latin1", "clé".encode("latin-1"))
    path = str(tmp_path / target)
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"SMSGW_UBILL_API_KEY_FILE": path})
    message = str(caught.value)
    assert message.startswith("SMSGW_UBILL_API_KEY_FILE: ") and path in message and problem in message


def test_an_empty_file_counts_as_unset(tmp_path: Path) -> None:
    settings = Settings.from_env({"SMSGW_UBILL_API_KEY_FILE": write(tmp_path, "empty", "\n")})
    with pytest.raises(
        SettingsError, match=r"^SMSGW_UBILL_API_KEY: required .* \(nor SMSGW_UBILL_API_KEY_FILE\)$"
    ):
        settings.require("SMSGW_UBILL_API_KEY")


def test_unknown_names_accepts_the_file_forms_and_still_reports_typos() -> None:
    environ = {
        "SMSGW_UBILL_API_KEY_FILE": "/x",
        "SMSGW_CLIENTS_FILE": "/x",
        "SMSGW_CONCURRENCY_OTP_FILE": "/x",
        "SMSGW_REDIS_SENTINEL_PASSWORD_FILE": "/x",
        "SMSGW_UBILL_APIKEY_FILE": "/x",
        "SMSGW_CALLBACK_KEY_FILE_FILE": "/x",
        "SMSGW_SANDBOX_API_KEY": "k",
    }
    assert unknown_names(environ) == ["SMSGW_CALLBACK_KEY_FILE_FILE", "SMSGW_UBILL_APIKEY_FILE"]
    every_field = {f"SMSGW_{name.upper()}_FILE": "/x" for name in Settings.__dataclass_fields__}
    every_field.pop("SMSGW_CONCURRENCY_FILE")
    assert unknown_names(every_field) == []


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SMSGW_")}
    return subprocess.run(
        [sys.executable, "-m", "smsgw", *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_a_bad_secret_file_stops_the_process_with_one_line(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope")
    result = _run(
        ["worker"], {"SMSGW_REDIS_URL": "redis://127.0.0.1:1/0", "SMSGW_UBILL_API_KEY_FILE": missing}
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "SMSGW_UBILL_API_KEY_FILE" in lines[0] and missing in lines[0], result.stderr

    key = write(tmp_path, "key", "file-secret-value")
    result = _run(
        ["worker"],
        {
            "SMSGW_REDIS_URL": "redis://127.0.0.1:1/0",
            "SMSGW_UBILL_API_KEY": "env-secret-value",
            "SMSGW_UBILL_API_KEY_FILE": key,
        },
    )
    assert result.returncode == 2 and "SMSGW_UBILL_API_KEY_FILE" in result.stderr
    assert "secret-value" not in result.stderr + result.stdout


async def test_gateway_and_worker_processes_run_on_secrets_from_files(redis_url: str, tmp_path: Path) -> None:
    """Real processes, every secret from a file: the token (clients), the callback key and the uBill key."""
    files = {
        "SMSGW_CLIENTS_FILE": write(tmp_path, "clients.json", json.dumps(CLIENTS) + "\n"),
        "SMSGW_CALLBACK_KEY_FILE": write(tmp_path, "callback-key", CALLBACK_KEY + "\n"),
        "SMSGW_UBILL_API_KEY_FILE": write(tmp_path, "ubill-api-key", UBILL_KEY + "\n"),
    }
    async with Stack(redis_url, worker=False) as stack:
        port = free_port()
        env = {k: v for k, v in stack.env.items() if f"{k}_FILE" not in files}
        env.update(files, SMSGW_HTTP_PORT=str(port), SMSGW_WORKER_HTTP_PORT=str(free_port()))
        gateway = spawn("gateway", env, tmp_path / "gateway.log")
        worker = spawn("worker", env, tmp_path / "worker.log")
        base = f"http://127.0.0.1:{port}"
        try:
            await eventually(lambda: answers_200(f"{base}/readyz"), timeout=20)
            async with stack.http.post(
                f"{base}/v1/messages",
                json={"to": ["995511194242"], "text": "From files"},
                headers={"Authorization": f"Bearer {TOKENS['auth']}"},
            ) as response:
                assert response.status == 202, await response.text()
                message_id = (await response.json())["id"]
            # The callback key came from its file: that value is let in, any other refused.
            callback = (
                f"{base}/callbacks/ubill?smsID=999999&number=995511194243&statusID=1&date=2026-01-01+10:00:00"
            )
            async with stack.http.get(callback + "&key=not-the-key") as response:
                assert response.status == 403
            async with stack.http.get(f"{callback}&key={CALLBACK_KEY}") as response:
                assert response.status == 200
            # The worker's uBill key came from its file: the sandbox accepts only that key.
            await stack.wait_status(message_id, "delivered", timeout=30)
            assert (await stack.sandbox_counts()) == {"995511194242": 1}
        finally:
            await astop(gateway)
            await astop(worker)
        logs = (tmp_path / "gateway.log").read_text() + (tmp_path / "worker.log").read_text()
        assert "settings.unknown_variable" not in logs
        assert CALLBACK_KEY not in logs and UBILL_KEY not in logs


def test_no_lane_retries_an_ambiguous_outcome_when_told_none() -> None:
    """Strict at-most-once: ``none`` (an empty variable would read as unset, i.e. the default ``otp``)."""
    assert Settings.from_env({"SMSGW_AMBIGUOUS_RETRY_LANES": "none"}).ambiguous_retry_lanes == frozenset()
    assert Settings.from_env({"SMSGW_AMBIGUOUS_RETRY_LANES": ""}).ambiguous_retry_lanes == {"otp"}
    assert Settings.from_env({"SMSGW_AMBIGUOUS_RETRY_LANES": "otp,bulk"}).ambiguous_retry_lanes == {
        "otp",
        "bulk",
    }
