"""Load generators for the accept-throughput figure: ``wrk`` (Debian's package) with a Lua script, else
``python -m ops.bench.pyload`` in its own process. The same generator drives the gateway and the baseline in
one run.

Each request is ``POST /v1/messages`` with one recipient drawn at random from the valid Georgian mobile
ranges, a bearer token and ``Content-Type: application/json``. Answers other than 202 are counted.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ops.bench.procs import ROOT

__all__ = ["LoadResult", "describe", "run_load", "wrk_script"]

_MARK = "BENCHJSON "


@dataclass(frozen=True)
class LoadResult:
    generator: str
    connections: int
    duration_s: float
    requests: int
    rps: float
    non_202: int
    socket_errors: int
    latency_ms_p50: float
    latency_ms_p99: float

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def wrk_script(token: str, prefixes: tuple[int, ...]) -> str:
    """wrk Lua: a fresh random valid number per request; counts non-202 answers per thread."""
    return f"""
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {token}"
local prefixes = {{{", ".join(str(p) for p in prefixes)}}}
local threads = {{}}
non202 = 0

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  math.randomseed(os.time() + tonumber(tostring({{}}):sub(8), 16))
end

function request()
  local number = string.format("995%d%06d", prefixes[math.random(#prefixes)], math.random(0, 999999))
  return wrk.format(nil, nil, nil, '{{"to":["' .. number .. '"],"text":"bench accept"}}')
end

function response(status, headers, body)
  if status ~= 202 then non202 = non202 + 1 end
end

function done(summary, latency, requests)
  local bad = 0
  for _, thread in ipairs(threads) do bad = bad + thread:get("non202") end
  local e = summary.errors
  io.write(string.format(
    '{_MARK}{{"requests":%d,"duration_us":%d,"non_202":%d,"socket_errors":%d,"p50_us":%d,"p99_us":%d}}\\n',
    summary.requests, summary.duration, bad, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


def describe(generator: str) -> str:
    if generator == "wrk":
        version = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
        return (version.stdout or version.stderr).splitlines()[0].strip()
    return "python aiohttp load generator (ops.bench.pyload), one process"


def pick_generator(wanted: str) -> str:
    if wanted == "auto":
        return "wrk" if shutil.which("wrk") else "python"
    if wanted == "wrk" and not shutil.which("wrk"):
        raise RuntimeError("wrk is not installed (apt-get install -y wrk), use --loadgen python")
    return wanted


async def run_load(
    generator: str,
    url: str,
    token: str,
    prefixes: tuple[int, ...],
    *,
    connections: int,
    duration: float,
    workdir: Path,
    cpus: set[int] | None,
) -> LoadResult:
    """Run the generator in its own process against ``url`` (the full POST URL) and parse its summary."""
    if generator == "wrk":
        script = workdir / "accept.lua"
        script.write_text(wrk_script(token, prefixes))
        argv = [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{max(1, round(duration))}s",
            "--timeout",
            "10s",
            "-s",
            str(script),
            url,
        ]
    else:
        argv = [
            sys.executable,
            "-m",
            "ops.bench.pyload",
            "--url",
            url,
            "--token",
            token,
            "--connections",
            str(connections),
            "--duration",
            str(duration),
            "--prefixes",
            ",".join(map(str, prefixes)),
        ]
    started = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )
    if cpus:
        os.sched_setaffinity(process.pid, cpus)
    out, err = await process.communicate()
    text = out.decode(errors="replace")
    line = next((ln for ln in text.splitlines() if ln.startswith(_MARK)), None)
    if process.returncode != 0 or line is None:
        raise RuntimeError(f"{argv[0]} failed ({process.returncode}): {text[-800:]} {err.decode()[-800:]}")
    data = json.loads(line[len(_MARK) :])
    elapsed = data["duration_us"] / 1e6 if data.get("duration_us") else time.monotonic() - started
    return LoadResult(
        generator=generator,
        connections=connections,
        duration_s=round(elapsed, 3),
        requests=data["requests"],
        rps=round(data["requests"] / elapsed, 1),
        non_202=data["non_202"],
        socket_errors=data["socket_errors"],
        latency_ms_p50=round(data["p50_us"] / 1000, 2),
        latency_ms_p99=round(data["p99_us"] / 1000, 2),
    )
