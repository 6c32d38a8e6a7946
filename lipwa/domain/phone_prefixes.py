"""The operator's prefix-override table (``LIPWA_PHONE_PREFIXES``), parsed and checked.

Format: comma-separated ``<E.164 digit prefix>=<network>`` pairs, e.g.
``"25411=safaricom,25673=airtel_ug"``; longest prefix wins (see ``normalise_phone``).
"""

from __future__ import annotations

from lipwa.domain.phones import Network


def parse_prefix_overrides(text: str) -> dict[str, Network]:
    """Parse the table; raise ValueError naming the bad pair."""
    table: dict[str, Network] = {}
    for pair in (p.strip() for p in text.split(",")):
        if not pair:
            continue
        prefix, sep, name = (part.strip() for part in pair.partition("="))
        if not sep or not (prefix.isascii() and prefix.isdigit()) or not 3 <= len(prefix) <= 12:
            raise ValueError(f"phone prefix {pair!r}: expected <E.164 digits>=<network>")
        try:
            table[prefix] = Network(name.lower())
        except ValueError:
            known = ", ".join(n.value for n in Network if n is not Network.UNKNOWN)
            message = f"phone prefix {pair!r}: unknown network; use one of {known}"
            raise ValueError(message) from None
    return table
