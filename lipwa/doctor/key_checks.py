"""The key ring: usable, strong, young enough, and told apart from staging's."""

from __future__ import annotations

from datetime import date

from lipwa.config import Settings
from lipwa.doctor.result import Check, failed, passed, warned
from lipwa.keys import KeyInfo, inspect_ring

MAX_KEY_AGE_DAYS = 90
NEW_KEY_FIX = (
    "Generate a key with `lipwa keys generate`, put it first in LIPWA_ENCRYPTION_KEYS (keep the "
    "old one after it), restart, run `lipwa keys rotate`, then drop the old key"
)


def ring(settings: Settings, live: bool) -> tuple[list[Check], list[KeyInfo]]:
    if settings.encryption_keys is None:
        fix = "Set LIPWA_ENCRYPTION_KEYS to the output of `lipwa keys generate`"
        return [failed("keys.ring", "LIPWA_ENCRYPTION_KEYS is not set", fix)], []
    keys = inspect_ring(settings.encryption_keys.get_secret_value())
    if not keys:
        return [failed("keys.ring", "LIPWA_ENCRYPTION_KEYS is empty", NEW_KEY_FIX)], []
    found: list[Check] = []
    for key in keys:
        name = f"keys.{key.version}"
        if key.problem:
            found.append(failed(name, f"key {key.version} is unusable: {key.problem}", NEW_KEY_FIX))
        elif key.weakness:
            detail = f"key {key.version} ({key.fingerprint}) is {key.weakness}"
            found.append(
                failed(name, detail, NEW_KEY_FIX) if live else warned(name, detail, NEW_KEY_FIX)
            )
    prints = [k.fingerprint for k in keys if k.fingerprint != "-"]
    if len(set(prints)) != len(prints):
        found.append(
            warned("keys.ring", "the same key appears under two versions", "Remove the copy")
        )
    if not found:
        listed = ", ".join(f"{k.version} ({k.fingerprint})" for k in keys)
        found.append(
            passed(
                "keys.ring",
                f"{len(keys)} AES-256 key(s), active first: {listed}; staging's fingerprints "
                "must differ (`lipwa keys status` there)",
            )
        )
    return found, keys


def age(keys: list[KeyInfo], today: date) -> list[Check]:
    if not keys:
        return []
    active = keys[0]
    name = "keys.age"
    if active.created is None:
        return [
            warned(
                name,
                f"the age of active key {active.version} is unknown (its version has no date)",
                "Rotate to a date-stamped key: " + NEW_KEY_FIX,
            )
        ]
    days = (today - active.created).days
    if days > MAX_KEY_AGE_DAYS:
        return [
            warned(
                name,
                f"active key {active.version} is {days} days old (rotate every {MAX_KEY_AGE_DAYS})",
                NEW_KEY_FIX,
            )
        ]
    return [passed(name, f"active key {active.version} is {days} day(s) old")]
