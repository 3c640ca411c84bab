"""``python -m ops.bench.uvloop_run gateway``: the unchanged ``smsgw`` command under uvloop's event loop.

Only for the bench's "would uvloop earn its place" figure: it installs uvloop's event-loop policy, then hands
over to ``smsgw.cli.main`` (``web.run_app`` and ``asyncio.run`` create their loops through the policy).
"""

from __future__ import annotations

import asyncio
import sys

import uvloop

from smsgw.cli import main

if __name__ == "__main__":
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    main(sys.argv[1:])
