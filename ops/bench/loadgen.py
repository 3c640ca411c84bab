"""Load generators: ``wrk`` (Debian's package) with a generated Lua script, else
``python -m ops.bench.pyload`` in its own process. The same generator and the same request shape drive the
product and its baseline.

A ``LoadSpec`` says what every request looks like:

- ``messages``: ``POST /v1/messages`` with one recipient drawn at random from the valid Georgian mobile
  ranges, a bearer token, ``Content-Type: application/json``; answered 202.
- ``facade``: ``GET /v1/sms/send?key=…&brandID=1&numbers=…&text=…`` (the uBill facade); answered 200.
- ``callbacks``: ``GET /callbacks/ubill?key&smsID&number&statusID&date`` for recorded (smsID, number) pairs
  read from a file: the first pass reports ``sent`` (0) for each pair, the second ``delivered`` (1), later
  passes repeat ``delivered`` (duplicates); answered 200.

``idempotency``: a fresh ``Idempotency-Key`` on every request (run id + counter). ``rate``: requests per
second over all connections (each connection waits ``connections / rate`` between requests; closed loop
without it). Answers other than the expected status are counted.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from ops.bench.procs import ROOT

__all__ = ["LoadResult", "LoadSpec", "describe", "pick_generator", "run_load", "wrk_script"]

_MARK = "BENCHJSON "
Kind = Literal["messages", "facade", "callbacks"]


@dataclass(frozen=True)
class LoadSpec:
    kind: Kind
    token: str = ""
    prefixes: tuple[int, ...] = ()
    idempotency: bool = False
    text: str = "bench accept"
    pairs_file: str = ""  # callbacks: "smsID,number" per line
    callback_key: str = ""
    date: str = ""  # callbacks: uBill's date (Asia/Tbilisi, Y-m-d H:i:s)
    rate: float | None = None  # requests/s over all connections; None: closed loop
    run_id: str = field(default_factory=lambda: secrets.token_hex(4))

    @property
    def ok_status(self) -> int:
        return 202 if self.kind == "messages" else 200

    def as_json(self) -> str:
        return json.dumps(asdict(self))

    @staticmethod
    def from_json(text: str) -> LoadSpec:
        data = json.loads(text)
        data["prefixes"] = tuple(data["prefixes"])
        return LoadSpec(**data)


@dataclass(frozen=True)
class LoadResult:
    generator: str
    kind: str
    connections: int
    duration_s: float
    requests: int
    rps: float
    non_ok: int
    socket_errors: int
    latency_ms_p50: float
    latency_ms_p90: float
    latency_ms_p99: float
    idempotency: bool
    rate_limit: float | None

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _lua_string(value: str) -> str:
    return json.dumps(value)  # a JSON string of ASCII is a valid Lua string literal


def wrk_script(spec: LoadSpec, connections: int) -> str:
    """wrk Lua for ``spec``: builds each request, counts unexpected answers per thread."""
    delay = f"function delay() return {connections * 1000.0 / spec.rate:.3f} end" if spec.rate else ""
    if spec.kind == "messages":
        build = """
  local number = string.format("995%d%06d", prefixes[math.random(#prefixes)], math.random(0, 999999))
  return wrk.format(nil, nil, nil, '{"to":["' .. number .. '"],"text":' .. text .. '}')"""
        head = f"""wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. {_lua_string(spec.token)}"""
    elif spec.kind == "facade":
        build = """
  local number = string.format("995%d%06d", prefixes[math.random(#prefixes)], math.random(0, 999999))
  return wrk.format(nil, "/v1/sms/send?key=" .. token .. "&brandID=1&numbers=" .. number ..
    "&text=" .. qtext)"""
        head = 'wrk.method = "GET"'
    else:
        build = """
  local i = (counter - 1) % #pairs + 1
  local status = counter <= #pairs and 0 or 1
  return wrk.format(nil, "/callbacks/ubill?key=" .. cbkey .. "&smsID=" .. pairs[i][1] .. "&number=" ..
    pairs[i][2] .. "&statusID=" .. status .. "&date=" .. qdate)"""
        head = 'wrk.method = "GET"'
    idem = (
        'wrk.headers["Idempotency-Key"] = run .. "-" .. tostring(tid) .. "-" .. tostring(counter)'
        if spec.idempotency
        else ""
    )
    return f"""
{head}
local prefixes = {{{", ".join(str(p) for p in spec.prefixes)}}}
local token = {_lua_string(spec.token)}
local text = {_lua_string(json.dumps(spec.text))}
local qtext = {_lua_string(spec.text.replace(" ", "%20"))}
local cbkey = {_lua_string(spec.callback_key)}
local qdate = {_lua_string(spec.date.replace(" ", "%20"))}
local pairs_file = {_lua_string(spec.pairs_file)}
local run = {_lua_string(spec.run_id)}
local ok_status = {spec.ok_status}
local threads = {{}}
local pairs = {{}}
bad = 0
counter = 0
tid = 0

function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end

function init(args)
  math.randomseed(os.time() + tonumber(tostring({{}}):sub(8), 16))
  if pairs_file ~= "" then
    for line in io.lines(pairs_file) do
      local sms, number = line:match("^([^,]+),([^,]+)$")
      if sms then pairs[#pairs + 1] = {{sms, number}} end
    end
  end
end

{delay}

function request()
  counter = counter + 1
  {idem}
  {build}
end

function response(status, headers, body)
  if status ~= ok_status then bad = bad + 1 end
end

function done(summary, latency, requests)
  local total_bad = 0
  for _, thread in ipairs(threads) do total_bad = total_bad + thread:get("bad") end
  local e = summary.errors
  io.write(string.format(
    '{_MARK}{{"requests":%d,"duration_us":%d,"non_ok":%d,"socket_errors":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d}}\\n',
    summary.requests, summary.duration, total_bad, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99)))
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
    base_url: str,
    spec: LoadSpec,
    *,
    connections: int,
    duration: float,
    workdir: Path,
    cpus: set[int] | None,
) -> LoadResult:
    """Run the generator in its own process against ``base_url`` (scheme, host and port) and parse its
    summary."""
    spec = dataclasses.replace(spec, run_id=secrets.token_hex(4))  # keys never repeat across runs
    path = {"messages": "/v1/messages", "facade": "/v1/sms/send", "callbacks": "/callbacks/ubill"}[spec.kind]
    if generator == "wrk":
        script = workdir / f"load-{spec.kind}-{spec.run_id}.lua"
        script.write_text(wrk_script(spec, connections))
        argv = [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{max(1, round(duration))}s",
            "--timeout",
            "10s",
            "-s",
            str(script),
            base_url + path,
        ]
    else:
        spec_file = workdir / f"load-{spec.kind}-{spec.run_id}.json"
        spec_file.write_text(spec.as_json())
        argv = [
            sys.executable,
            "-m",
            "ops.bench.pyload",
            "--url",
            base_url + path,
            "--spec",
            str(spec_file),
            "--connections",
            str(connections),
            "--duration",
            str(duration),
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
        kind=spec.kind,
        connections=connections,
        duration_s=round(elapsed, 3),
        requests=data["requests"],
        rps=round(data["requests"] / elapsed, 1),
        non_ok=data["non_ok"],
        socket_errors=data["socket_errors"],
        latency_ms_p50=round(data["p50_us"] / 1000, 2),
        latency_ms_p90=round(data["p90_us"] / 1000, 2),
        latency_ms_p99=round(data["p99_us"] / 1000, 2),
        idempotency=spec.idempotency,
        rate_limit=spec.rate,
    )
