"""Best-case odds of guessing a verification code, with this gateway's defaults beside Twilio Verify's.

``python -m ops.bench.bruteforce`` prints the table the README quotes. The attacker here is the best case for
them: every guess is a distinct value (no repeats within a verification), and every SMS the limits allow is
spent on a new verification (a new code, new attempts), none on resends. The bounds are enforced over HTTP in
``tests/verify/test_brute_force.py`` (25 guesses an hour with the defaults).

- sms-gateway: 5 checks per verification (``SMSGW_VERIFY_MAX_ATTEMPTS``), 5 SMS per number per hour, resends
  included (``SMSGW_VERIFY_NUMBER_LIMIT`` 5/3600): at most 5 verifications, 25 guesses per hour.
- Twilio Verify (documented defaults): 5 checks per verification (error 60202, "Max (5) verification check
  attempts reached", then wait for the verification to expire, 10 minutes, before a new one) and 5 sends per
  10 minutes (60203, resends of the same code): at most one code, 5 guesses, per 10 minutes; 30 per hour.
- Vonage Verify: 3 wrong codes per request; its request rate per number is not a documented constant, so it
  has no row here.
"""

from __future__ import annotations

__all__ = ["odds", "table"]


def odds(digits: int, guesses_per_verification: int, verifications: int) -> float:
    """P(at least one right guess) over ``verifications`` independent codes, ``guesses`` distinct each."""
    miss = 1.0 - guesses_per_verification / 10.0**digits
    return float(1.0 - miss**verifications)


def table() -> list[tuple[str, int, float, float]]:
    """(who, guesses per hour, P per hour, P per day) with 6-digit codes."""
    rows = []
    for who, per_verification, per_hour in (
        ("sms-gateway defaults", 5, 5),  # 5 verifications an hour
        ("Twilio Verify defaults", 5, 6),  # one verification per 10 minutes
    ):
        rows.append(
            (
                who,
                per_verification * per_hour,
                odds(6, per_verification, per_hour),
                odds(6, per_verification, per_hour * 24),
            )
        )
    return rows


def main() -> None:
    print("| attacker's best case, 6-digit codes | guesses/hour | P(success) in an hour | in a day |")
    print("|---|---|---|---|")
    for who, guesses, hour, day in table():
        print(f"| {who} | {guesses} | {hour:.2e} (1 in {1 / hour:,.0f}) | {day:.2e} (1 in {1 / day:,.0f}) |")


if __name__ == "__main__":
    main()
