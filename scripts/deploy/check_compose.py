"""Check ops/docker-compose.yml beyond its schema: settings smsgw accepts, files that exist, grace periods.

    python scripts/deploy/check_compose.py [ops/docker-compose.yml]

- every SMSGW_* variable of a gateway/worker/sandbox service is a name smsgw reads, and Settings.from_env
  (SandboxConfig.from_env for the sandbox) accepts the service's environment;
- the sandbox's keys match the worker's uBill key and the gateway's callback key, and its callback URL points
  at the gateway's callback path;
- every bind-mounted file or folder exists next to the compose file;
- the worker's stop_grace_period is above its SMSGW_SHUTDOWN_GRACE, as terminationGracePeriodSeconds is in the
  chart, so `docker compose stop` never kills a uBill call in flight.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def _seconds(value: str) -> float:
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", value):
        total += float(number) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
    return total


def main() -> int:
    sys.path.insert(0, str(ROOT))
    from smsgw.sandbox.config import SandboxConfig  # noqa: PLC0415
    from smsgw.settings import Settings, unknown_names  # noqa: PLC0415

    path = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "ops" / "docker-compose.yml"
    compose = yaml.safe_load(path.read_text(encoding="utf-8"))
    problems: list[str] = []
    envs: dict[str, dict[str, str]] = {}
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = str(volume).split(":", 1)[0]
            if source.startswith((".", "/")) and not (path.parent / source).exists():
                problems.append(f"{name}: bind mount {source} does not exist")
        command = service.get("command") or []
        role = command[0] if command else None
        if role not in ("gateway", "worker", "sandbox"):
            continue
        env = {key: str(value) for key, value in (service.get("environment") or {}).items()}
        envs[role] = env
        unknown = unknown_names(env) + SandboxConfig.unknown_names(env)
        problems += [f"{name}: {var} is not a setting smsgw reads" for var in unknown]
        try:
            (SandboxConfig if role == "sandbox" else Settings).from_env(env)
        except Exception as exc:
            problems.append(f"{name}: smsgw {role} would refuse this environment: {exc}")
        if role == "worker":
            grace = float(env.get("SMSGW_SHUTDOWN_GRACE", 25))
            stop = _seconds(str(service.get("stop_grace_period", "10s")))
            if not stop > grace:
                problems.append(
                    f"{name}: stop_grace_period ({stop:g}s) must exceed SMSGW_SHUTDOWN_GRACE ({grace:g}s)"
                )
    sandbox, gateway, worker = envs.get("sandbox", {}), envs.get("gateway", {}), envs.get("worker", {})
    if sandbox:
        pairs = [
            ("SMSGW_SANDBOX_API_KEY", sandbox, "SMSGW_UBILL_API_KEY", worker),
            ("SMSGW_SANDBOX_CALLBACK_KEY", sandbox, "SMSGW_CALLBACK_KEY", gateway),
        ]
        for left, left_env, right, right_env in pairs:
            if left_env.get(left) != right_env.get(right):
                problems.append(
                    f"sandbox {left} differs from {right}: the sandbox would refuse or be refused"
                )
        if not sandbox.get("SMSGW_SANDBOX_CALLBACK_URL", "").endswith("/callbacks/ubill"):
            problems.append(
                "sandbox: SMSGW_SANDBOX_CALLBACK_URL must point at the gateway's /callbacks/ubill"
            )
    for problem in problems:
        print(f"  ERROR {path.name} {problem}")
    print(f"{path.name}: {len(compose['services'])} services, {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
