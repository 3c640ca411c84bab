"""Phone verification (``/v1/verifications``): codes, sealing, templates, abuse limits and the pumping guard.

The gateway's endpoints (``smsgw.gateway.verifications``) put these pieces together; the worker uses
only ``sealing.open_sms_text``, right before the uBill call, to open a verification SMS stored sealed.
"""
