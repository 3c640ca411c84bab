"""The seeded chaos soak: ``python -m ops.soak --seed N --duration SECONDS``.

It starts its own Redis (or a Sentinel trio), a proxy between the product and Redis, the uBill sandbox, two
gateways and two workers as real processes; drives a mixed, seeded workload through them while a seeded
schedule injects faults; then checks what uBill received, what the API and the event streams say, and prints
one table per fault kind. See the README's "Chaos soak" section.
"""
