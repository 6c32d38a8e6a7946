"""A merchant's C2B validation rules and the verdict on one payment. Pure, no I/O.

The rules live in the M-Pesa account's config under ``c2b``::

    {"accept_unknown_accounts": true, "account_pattern": "^INV\\d{3,8}$",
     "min_amount": "10", "max_amount": "150000"}

- Amount outside ``min_amount``..``max_amount`` (inclusive; either may be absent) or not a
  positive number → ``C2B00013`` Invalid Amount.
- The account number (``BillRefNumber``) is *known* when it matches an open order (a pending
  or unknown prompt payment with that reference, or an active payment link) or fully matches
  ``account_pattern``. Unknown account numbers are accepted only when
  ``accept_unknown_accounts`` is true (the default) → else ``C2B00012`` Invalid Account Number.
  A Buy Goods (till) payment has no account number: this rule does not apply to it.
- A BusinessShortCode that is not the account's → ``C2B00015``; anything else that makes the
  request unusable → ``C2B00016`` Other Error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from lipwa.domain.errors import DomainError

ACCEPT = "0"
INVALID_ACCOUNT = "C2B00012"
INVALID_AMOUNT = "C2B00013"
INVALID_SHORTCODE = "C2B00015"
OTHER_ERROR = "C2B00016"
PATTERN_MAX = 200


@dataclass(frozen=True)
class C2bRules:
    accept_unknown_accounts: bool = True
    account_pattern: str | None = None
    min_amount: Decimal | None = None
    max_amount: Decimal | None = None

    def view(self) -> dict[str, Any]:
        return {
            "accept_unknown_accounts": self.accept_unknown_accounts,
            "account_pattern": self.account_pattern,
            "min_amount": None if self.min_amount is None else f"{self.min_amount:f}",
            "max_amount": None if self.max_amount is None else f"{self.max_amount:f}",
        }


def _limit(raw: object, key: str) -> Decimal | None:
    if raw is None or raw == "":
        return None
    if isinstance(raw, bool) or not isinstance(raw, str | int):
        raise DomainError("invalid_c2b_rules", f"{key} must be a decimal string", f"c2b.{key}")
    try:
        value = Decimal(str(raw).strip())
    except InvalidOperation as exc:
        raise DomainError(
            "invalid_c2b_rules", f"{key} must be a decimal string", f"c2b.{key}"
        ) from exc
    if not value.is_finite() or value < 0:
        raise DomainError("invalid_c2b_rules", f"{key} must be 0 or more", f"c2b.{key}")
    return value


def parse_rules(raw: object) -> C2bRules:
    """Rules from the account config's ``c2b`` value; raises DomainError when they are bad."""
    if raw is None:
        return C2bRules()
    if not isinstance(raw, dict):
        raise DomainError("invalid_c2b_rules", "c2b rules must be an object", "c2b")
    unknown = set(raw) - {"accept_unknown_accounts", "account_pattern", "min_amount", "max_amount"}
    if unknown:
        raise DomainError(
            "invalid_c2b_rules", f"unknown c2b rule(s): {', '.join(sorted(unknown))}", "c2b"
        )
    accept = raw.get("accept_unknown_accounts", True)
    if not isinstance(accept, bool):
        raise DomainError(
            "invalid_c2b_rules",
            "accept_unknown_accounts must be true or false",
            "c2b.accept_unknown_accounts",
        )
    pattern = raw.get("account_pattern")
    if pattern is not None:
        if not isinstance(pattern, str) or not pattern or len(pattern) > PATTERN_MAX:
            raise DomainError(
                "invalid_c2b_rules",
                f"account_pattern must be a regular expression of 1..{PATTERN_MAX} characters",
                "c2b.account_pattern",
            )
        try:
            re.compile(pattern)
        except re.error as exc:
            raise DomainError(
                "invalid_c2b_rules",
                f"account_pattern is not a valid regular expression: {exc}",
                "c2b.account_pattern",
            ) from exc
    low, high = (
        _limit(raw.get("min_amount"), "min_amount"),
        _limit(raw.get("max_amount"), "max_amount"),
    )
    if low is not None and high is not None and low > high:
        raise DomainError("invalid_c2b_rules", "min_amount is above max_amount", "c2b.min_amount")
    return C2bRules(accept, pattern, low, high)


@dataclass(frozen=True)
class Verdict:
    code: str  # "0" accepts; a C2B000xx code rejects
    reason: str  # for the stored callback row and logs, never sent to Daraja

    @property
    def accepted(self) -> bool:
        return self.code == ACCEPT


def decide(
    rules: C2bRules,
    *,
    amount: Decimal | None,
    bill_ref: str,
    has_account_number: bool,
    matches_open_order: bool,
) -> Verdict:
    """The answer to one validation request (see the module docstring for the rules)."""
    if amount is None:
        return Verdict(INVALID_AMOUNT, "TransAmount is not a positive number")
    if rules.min_amount is not None and amount < rules.min_amount:
        return Verdict(INVALID_AMOUNT, f"amount {amount} is below {rules.min_amount}")
    if rules.max_amount is not None and amount > rules.max_amount:
        return Verdict(INVALID_AMOUNT, f"amount {amount} is above {rules.max_amount}")
    if not has_account_number:
        return Verdict(ACCEPT, "buy goods: no account number to check")
    if matches_open_order:
        return Verdict(ACCEPT, "account number matches an open order")
    if rules.account_pattern is not None and re.fullmatch(rules.account_pattern, bill_ref):
        return Verdict(ACCEPT, "account number matches the account pattern")
    if rules.accept_unknown_accounts:
        return Verdict(ACCEPT, "unknown account number accepted (accept_unknown_accounts)")
    return Verdict(INVALID_ACCOUNT, f"unknown account number {bill_ref[:20]!r}")
