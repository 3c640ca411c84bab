"""sms-gateway: the one place where internal services send SMS (HTTP edge, Redis lanes, arq workers, uBill)."""

__version__ = "0.1.0"
