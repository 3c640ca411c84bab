"""``smsgw dev``: the whole service on one machine, for trying it out and for local development.

Starts an embedded Redis (unless SMSGW_REDIS_URL is set), the uBill sandbox, the gateway and the worker as
child processes wired to each other, prefixes their logs, prints a ready-to-paste curl line, restarts a child
(or the Redis) that dies, and stops everything (children, then Redis) on Ctrl-C. Any SMSGW_* variable set by
the caller wins over these defaults.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path

from smsgw.devtools.redis import EmbeddedRedis
from smsgw.settings import token_sha256

__all__ = ["DEV_TOKEN", "dev_environment", "main"]

DEV_TOKEN = "dev-token"  # noqa: S105 - a local development token, printed on purpose
DEV_CALLBACK_KEY = "dev-callback-key"
DEV_UBILL_KEY = "sandbox-key"
DEV_VERIFY_SECRET = "dev-verification-secret-not-for-production"  # noqa: S105 - local development only
CHILDREN = ("sandbox", "gateway", "worker")
CONFIG_ERROR = 2  # the exit code of a process stopped by a bad setting (smsgw.cli)


def dev_environment(environ: Mapping[str, str], redis_url: str) -> dict[str, str]:
    """Defaults that make the four processes find each other; explicit SMSGW_* settings win."""
    gateway_port = environ.get("SMSGW_HTTP_PORT", "8080")
    sandbox_port = environ.get("SMSGW_SANDBOX_PORT", "8081")
    clients = [
        {
            "name": "dev",
            "token_sha256": token_sha256(DEV_TOKEN),
            "brands": [1, 2],
            "default_brand": 1,
            "otp": True,
            "admin": True,
        }
    ]
    defaults = {
        "SMSGW_REDIS_URL": redis_url,
        "SMSGW_HTTP_HOST": "127.0.0.1",
        "SMSGW_HTTP_PORT": gateway_port,
        "SMSGW_UBILL_BASE_URL": f"http://127.0.0.1:{sandbox_port}/v1",
        "SMSGW_UBILL_API_KEY": DEV_UBILL_KEY,
        "SMSGW_CALLBACK_KEY": DEV_CALLBACK_KEY,
        "SMSGW_VERIFY_SECRETS": DEV_VERIFY_SECRET,
        "SMSGW_CLIENTS": json.dumps(clients),
        "SMSGW_BALANCE_INTERVAL": "10",
        "SMSGW_LOG_FORMAT": "console",
        "SMSGW_SANDBOX_PORT": sandbox_port,
        "SMSGW_SANDBOX_API_KEY": DEV_UBILL_KEY,
        "SMSGW_SANDBOX_CALLBACK_URL": f"http://127.0.0.1:{gateway_port}/callbacks/ubill",
        "SMSGW_SANDBOX_CALLBACK_KEY": DEV_CALLBACK_KEY,
        "SMSGW_SANDBOX_CALLBACK_DELAY": "1",
    }
    # A setting the caller gives as a file (SMSGW_<NAME>_FILE) must not meet a default of the plain name.
    defaults = {k: v for k, v in defaults.items() if f"{k}_FILE" not in environ}
    return {**os.environ, **defaults, **{k: v for k, v in environ.items() if k.startswith("SMSGW_")}}


def _die_with_parent() -> None:
    """Linux: children get SIGTERM if `smsgw dev` itself is killed, instead of lingering."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _pump(name: str, stream: object) -> None:
    for line in iter(stream.readline, b""):  # type: ignore[attr-defined]
        sys.stdout.write(f"{name:<8}| {line.decode(errors='replace')}")
        sys.stdout.flush()


def _start(name: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "smsgw", name],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        preexec_fn=_die_with_parent,  # noqa: PLW1509 - only sets the parent-death signal
    )
    threading.Thread(target=_pump, args=(name, process.stdout), daemon=True).start()
    return process


def _wait_ready(url: str, alive: Callable[[], bool], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive():
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310
            if response.status == 200:
                return True
        time.sleep(0.2)
    return False


def _banner(env: dict[str, str]) -> str:
    base = f"http://127.0.0.1:{env['SMSGW_HTTP_PORT']}"
    token = DEV_TOKEN if "SMSGW_CLIENTS" not in os.environ else "<your token>"
    body = json.dumps({"to": ["+995 511 19 42 42"], "text": "Hello from sms-gateway", "reference": "try-1"})
    return (
        "\nsms-gateway is up (Ctrl-C stops everything).\n"
        f"  gateway  {base}   worker  http://127.0.0.1:{env.get('SMSGW_WORKER_HTTP_PORT', '9091')}/metrics"
        f"   sandbox  http://127.0.0.1:{env['SMSGW_SANDBOX_PORT']}/_sandbox/sends\n"
        f"  redis    {env['SMSGW_REDIS_URL']}\n\nSend a message:\n"
        f"  curl -s -X POST {base}/v1/messages -H 'Authorization: Bearer {token}' "
        f"-H 'Content-Type: application/json' -d '{body}'\n"
        "Then follow it (use the id from the answer):\n"
        f"  curl -s {base}/v1/messages/<id> -H 'Authorization: Bearer {token}'\n"
    )


def main(environ: Mapping[str, str]) -> None:
    data_dir = Path(environ.get("SMSGW_DEV_DIR", ".smsgw/dev")).resolve()
    redis: EmbeddedRedis | None = None
    if environ.get("SMSGW_REDIS_URL"):
        redis_url = environ["SMSGW_REDIS_URL"]
    else:
        redis = EmbeddedRedis(data_dir / "redis")
        redis.start()
        redis_url = redis.url
        print(
            f"dev     | embedded Redis ({redis.binary}) on {redis.url}, AOF always, data in {redis.data_dir}"
        )
    env = dev_environment(environ, redis_url)
    children: dict[str, subprocess.Popen[bytes]] = {}
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    try:
        for name in CHILDREN:
            children[name] = _start(name, env)
            if name == "sandbox":  # listening before the worker's first uBill call (its balance poll)
                _wait_ready(
                    f"http://127.0.0.1:{env['SMSGW_SANDBOX_PORT']}/healthz",
                    lambda: children["sandbox"].poll() is None,
                    timeout=10,
                )
        ready = _wait_ready(
            f"http://127.0.0.1:{env['SMSGW_HTTP_PORT']}/readyz",
            lambda: all(p.poll() is None for p in children.values()),
        )
        print(_banner(env) if ready else "dev     | the gateway did not become ready; see the logs above")
        while not stopping.is_set() and _keep_running(children, env, redis):
            stopping.wait(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        _stop(children)
        if redis is not None:
            redis.stop()
        print("dev     | stopped")


def _keep_running(
    children: dict[str, subprocess.Popen[bytes]], env: dict[str, str], redis: EmbeddedRedis | None
) -> bool:
    """Restart what died (a killed worker, a crashed Redis: the AOF keeps what was accepted), so the stack
    behaves like a deployment under fault injection; a configuration error (exit code 2) stops everything."""
    if redis is not None and not redis.alive():
        print(f"dev     | Redis exited; restarting it on {redis.url} from its AOF")
        redis.start()
    for name, process in list(children.items()):
        code = process.poll()
        if code is None:
            continue
        if code == CONFIG_ERROR:
            print(f"dev     | {name} stopped on a configuration error; stopping")
            return False
        print(f"dev     | {name} exited with {code}; restarting it")
        children[name] = _start(name, env)
    return True


def _stop(children: dict[str, subprocess.Popen[bytes]]) -> None:
    for process in children.values():
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 40
    for process in children.values():
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
