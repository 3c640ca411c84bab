"""``python -m ops.bench``: sms-gateway's figures, each beside a baseline measured in the same run.

Everything runs on this machine: an embedded Redis (AOF, ``appendfsync always``), ``smsgw sandbox``,
``smsgw gateway`` and ``smsgw worker`` as real processes, plus the baselines (a minimal aiohttp app, stock arq
workers). See ``ops/bench/README.md`` for what each figure means.
"""
