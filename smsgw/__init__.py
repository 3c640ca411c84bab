"""sms-gateway: the one place internal services send SMS through (HTTP edge, Redis lanes, workers, uBill)."""

__version__ = "0.1.0"
