"""The ``smsgw`` console script: clear one-line configuration errors, and ``smsgw dev`` end to end."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from smsgw.devtools.redis import free_port
from smsgw.devtools.run import DEV_TOKEN
from smsgw.settings import token_sha256


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SMSGW_")}
    return subprocess.run(
        [sys.executable, "-m", "smsgw", *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"SMSGW_HTTP_PORT": "eighty"}, "SMSGW_HTTP_PORT"),
        ({"SMSGW_REDIS_URL": "redis://127.0.0.1:1", "SMSGW_CALLBACK_KEY": "k"}, "SMSGW_CLIENTS"),
        ({"SMSGW_CLIENTS": '[{"name": "a", "token_sha256": "nothex"}]'}, "SMSGW_CLIENTS"),
        ({"SMSGW_ALLOWED_COUNTRIES": "GE,XX"}, "SMSGW_ALLOWED_COUNTRIES"),
        ({"SMSGW_UBILL_BASE_URL": "ftp://x"}, "SMSGW_UBILL_BASE_URL"),
    ],
)
def test_bad_settings_stop_the_gateway_with_one_line_naming_them(env: dict[str, str], named: str) -> None:
    result = run(["gateway"], env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and named in lines[0], result.stderr


def test_worker_requires_the_ubill_key() -> None:
    result = run(["worker"], {"SMSGW_REDIS_URL": "redis://127.0.0.1:1/0"})
    assert result.returncode == 2 and "SMSGW_UBILL_API_KEY" in result.stderr


def test_token_hash_matches_the_clients_format() -> None:
    result = run(["token-hash", "s3cret"], {})
    assert result.stdout.strip() == token_sha256("s3cret")


def _request(url: str, body: dict[str, object] | None = None) -> dict[str, object]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url,
        data=data,
        headers={
            "Authorization": f"Bearer {DEV_TOKEN}",
            "Content-Type": "application/json",
        },
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        result: dict[str, object] = json.loads(response.read())
        return result


def _delivered(gateway: int, created: dict[str, object]) -> dict[str, object]:
    for _ in range(200):
        message = _request(f"http://127.0.0.1:{gateway}/v1/messages/{created['id']}")
        if message["status"] == "delivered":
            return message
        time.sleep(0.1)
    raise AssertionError(f"not delivered: {message}")


def _retrying(call: Callable[[], dict[str, object]]) -> dict[str, object]:
    """The first calls after a Redis kill answer 503 until the dev supervisor restarted it."""
    for _ in range(100):
        try:
            return call()
        except urllib.error.HTTPError as exc:
            if exc.code != 503:
                raise
            time.sleep(0.1)
    raise AssertionError("the gateway did not recover")


def _child(parent: int, command: str) -> int:
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == parent and command.encode() in cmdline:
            return int(proc.name)
    raise AssertionError(f"no {command} child of {parent}")


def test_dev_runs_everything_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    """The README's first command: embedded Redis, sandbox, gateway, worker; a message reaches delivered."""
    gateway, sandbox, worker = free_port(), free_port(), free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SMSGW_")},
        "SMSGW_HTTP_PORT": str(gateway),
        "SMSGW_SANDBOX_PORT": str(sandbox),
        "SMSGW_WORKER_HTTP_PORT": str(worker),
        "SMSGW_DEV_DIR": str(tmp_path / "dev"),
        "SMSGW_SANDBOX_CALLBACK_DELAY": "0.1",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "smsgw", "dev"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    output: list[str] = []
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            output.append(line)
            if "curl -s -X POST" in line:
                break
        else:
            raise AssertionError("no ready banner:\n" + "".join(output))
        created = _request(
            f"http://127.0.0.1:{gateway}/v1/messages",
            {"to": ["+995 511 19 42 42"], "text": "Hello from sms-gateway"},
        )
        message = _delivered(gateway, created)
        assert message["status"] == "delivered"
        pidfile = tmp_path / "dev" / "redis" / "redis.pid"
        # Fault injection under `smsgw dev`: a killed worker and a killed Redis come back by themselves.
        os.kill(_child(process.pid, "worker"), signal.SIGKILL)
        os.kill(int(pidfile.read_text()), signal.SIGKILL)
        _delivered(
            gateway,
            _retrying(
                lambda: _request(
                    f"http://127.0.0.1:{gateway}/v1/messages", {"to": ["+995 511 19 42 43"], "text": "again"}
                )
            ),
        )
        redis_pid = int(pidfile.read_text())
    finally:
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=60)
    assert process.returncode == 0, rest
    assert "worker exited with -9; restarting it" in rest
    assert "Redis exited; restarting it" in rest
    assert "stopped" in rest
    with pytest.raises(ProcessLookupError):
        os.kill(redis_pid, 0)
