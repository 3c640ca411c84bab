"""A Redis of the test's own that the fault tests may stop, reconfigure, break and relieve."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from smsgw.devtools.redis import EmbeddedRedis
from tests.faults.support import PROTECTED_CONFIGS, resume


@pytest.fixture
def fault_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """Like ``own_redis``, with ``CONFIG SET dir`` allowed (the MISCONF fault) and resumed if left paused."""
    server = EmbeddedRedis(tmp_path / "redis", extra_args=PROTECTED_CONFIGS)
    server.start()
    yield server
    with contextlib.suppress(OSError, ValueError):
        resume(server)
    server.stop()
