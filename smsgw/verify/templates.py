"""The verification SMS per locale: the code first (it shows in the notification preview and is what
one-time-code autofill picks up), the service's name where the brand's name is known, and a warning not to
share it; one SMS segment wherever that can be had.

Each locale lists variants from the fullest to the shortest; the first that fits one segment is used, and
when none does (a long brand name, or one outside GSM-7 in an English text) the shortest goes out in two.
English is GSM-7 (160 characters a segment), Georgian UCS-2 (70): the README's table of what each costs comes
from ``tests/verify/test_templates.py``.
"""

from __future__ import annotations

from smsgw.segments import count_segments

__all__ = ["DEFAULT_LOCALE", "LOCALES", "render"]

DEFAULT_LOCALE = "en"
_WITH_BRAND: dict[str, tuple[str, ...]] = {
    "en": (
        "{code} is your {brand} verification code. Do not share it with anyone.",
        "{code} is your {brand} code. Do not share it with anyone.",
        "{code} is your {brand} code. Do not share it.",
    ),
    "ka": (
        "{brand}: {code} არის თქვენი დადასტურების კოდი. არავის გაუზიაროთ.",
        "{brand}: {code} - თქვენი კოდია. არავის გაუზიაროთ.",
        "{brand} კოდი: {code}. არავის გაუზიაროთ.",
    ),
}
_WITHOUT_BRAND: dict[str, tuple[str, ...]] = {
    "en": ("{code} is your verification code. Do not share it with anyone.",),
    "ka": ("{code} არის თქვენი დადასტურების კოდი. არავის გაუზიაროთ.",),
}
LOCALES: tuple[str, ...] = tuple(_WITH_BRAND)


def render(locale: str, code: str, brand: str | None) -> str:
    """The SMS text; ``brand`` is the service's name (None or empty: the text names no service)."""
    variants = _WITH_BRAND[locale] if brand else _WITHOUT_BRAND[locale]
    texts = [v.format(code=code, brand=brand or "") for v in variants]
    return next((t for t in texts if count_segments(t)[0] == 1), texts[-1])
