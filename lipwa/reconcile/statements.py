"""Provider statements (CSV) → neutral rows the matcher understands.

Two formats, recognised by their header line:

- **M-Pesa organisation statement** (the org portal's CSV export; the simulator's
  ``/_sim/statements/mpesa.csv`` writes the same columns): ``Receipt No., Completion Time,
  Initiation Time, Details, Transaction Status, Paid In, Withdrawn, Balance, Balance
  Confirmed, Reason Type, Other Party Info, Linked Transaction ID, A/C No.``. Times are Kenya
  time (EAT, UTC+3) without a zone. ``Other Party Info`` is ``"<msisdn> - <name>"``; the
  msisdn may be masked (``2547******149``). Lines before the header (the portal puts the
  organisation name and period there) are skipped.
- **MTN MoMo transactions export** (modelled by ``lipwa.simulator.momo_statement``): ``Id``
  (financialTransactionId), ``External Transaction Id`` (our externalId: the payment id),
  ``Date`` (UTC), ``Status``, ``Type``, ``From``, ``To``, ``Amount`` (signed), ``Currency``,
  ``Fee`` and the rest.

Parsing is all-or-nothing: the first bad line raises ``StatementError`` naming the line
number (1-based, as an editor shows it) and the column; nothing is returned and nothing is
written. Receipts must be unique within a file.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Literal

Direction = Literal["in", "out"]
Format = Literal["mpesa", "momo"]

EAT = timezone(timedelta(hours=3), "EAT")

MPESA_COLUMNS = (
    "Receipt No.", "Completion Time", "Transaction Status", "Paid In", "Withdrawn",
    "Reason Type", "Other Party Info", "A/C No.",
)  # fmt: skip
MOMO_COLUMNS = ("Id", "External Transaction Id", "Date", "Status", "Type", "From", "To",
                "Amount", "Currency")  # fmt: skip
HEADER_SEARCH_LINES = 20
MAX_RECEIPT = 64
_PARTY = re.compile(r"[0-9*xX#]{4,20}")
_TIME_FORMATS = ("%Y-%m-%d %H:%M:%S", "%d-%m-%Y %H:%M:%S", "%d/%m/%Y %H:%M:%S",
                 "%Y-%m-%dT%H:%M:%S")  # fmt: skip


class StatementError(ValueError):
    """A statement that cannot be read; ``line`` is 1-based (0: the file as a whole)."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}" if line else message)
        self.line = line
        self.message = message


@dataclass(frozen=True)
class StatementRow:
    """One statement line in neutral form. ``amount`` is positive; ``direction`` says which way.

    ``status`` is ``completed`` for settled lines, else the provider's word, lower-cased.
    ``party`` is the other side's number as printed (possibly masked), or "" if none.
    """

    line: int
    receipt: str
    completed_at: datetime  # aware
    amount: Decimal
    currency: str
    direction: Direction
    party: str
    reference: str
    status: str
    kind: str  # Reason Type (M-Pesa) / Type (MoMo)
    fee: Decimal | None = None


@dataclass(frozen=True)
class Statement:
    format: Format
    zone: timezone  # the statement's own clock: its dates are days of this zone
    rows: tuple[StatementRow, ...]
    source: str = ""

    def days(self) -> tuple[date, date] | None:
        """First and last day (in the statement's zone) its rows fall on."""
        if not self.rows:
            return None
        days = [r.completed_at.astimezone(self.zone).date() for r in self.rows]
        return min(days), max(days)


Progress = Callable[[int], None]  # characters consumed so far


# ----- field parsers ------------------------------------------------------------------------------
def _money(text: str, line: int, column: str) -> Decimal | None:
    cleaned = text.strip().replace(",", "")
    if not cleaned:
        return None
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        raise StatementError(line, f"{column} {text!r} is not an amount") from None
    if not value.is_finite():
        raise StatementError(line, f"{column} {text!r} is not an amount")
    return value


def _time(text: str, zone: timezone, line: int, column: str) -> datetime:
    cleaned = text.strip()
    for fmt in _TIME_FORMATS:
        try:
            return datetime.strptime(cleaned, fmt).replace(tzinfo=zone)
        except ValueError:
            continue
    raise StatementError(line, f"{column} {text!r} is not a time like 2026-01-31 14:05:09")


def _receipt(text: str, line: int, column: str) -> str:
    receipt = text.strip()
    if not receipt:
        raise StatementError(line, f"{column} is empty")
    if len(receipt) > MAX_RECEIPT or any(c.isspace() for c in receipt):
        raise StatementError(line, f"{column} {text!r} is not a receipt number")
    return receipt


def party_number(text: str) -> str:
    """The phone (or shortcode) in a party field: ``"254708374149 - John Doe"`` → the number,
    masked digits kept as ``*`` (``"2547****149"``); "" if there is none."""
    head = text.split(" - ", 1)[0].strip().replace(" ", "").lstrip("+")
    match = _PARTY.fullmatch(head)
    if match is None:
        return ""
    return re.sub(r"[xX#]", "*", head)


# ----- reading ---------------------------------------------------------------------------------
def _lines(text_lines: Iterable[str], progress: Progress | None) -> Iterator[str]:
    consumed = 0
    for n, line in enumerate(text_lines, 1):
        consumed += len(line)
        if progress is not None and n % 500 == 0:
            progress(consumed)
        yield line
    if progress is not None:
        progress(consumed)


def _find_header(
    reader: Iterator[list[str]], counter: Callable[[], int]
) -> tuple[Format, dict[str, int]]:
    for _ in range(HEADER_SEARCH_LINES):
        try:
            cells = next(reader)
        except StopIteration:
            break
        names = [c.strip().lstrip("\ufeff") for c in cells]
        for fmt, required in (("mpesa", MPESA_COLUMNS), ("momo", MOMO_COLUMNS)):
            if required[0] in names and all(c in names for c in required[:3]):
                missing = [c for c in required if c not in names]
                if missing:
                    raise StatementError(
                        counter(), f"the header lacks column(s) {', '.join(missing)}"
                    )
                return fmt, {name: i for i, name in enumerate(names)}  # type: ignore[return-value]
    raise StatementError(
        1,
        "not a statement: no header with 'Receipt No.' (M-Pesa organisation statement) or "
        "'Id, External Transaction Id' (MTN MoMo transactions export) in the first "
        f"{HEADER_SEARCH_LINES} lines",
    )


def _mpesa_row(cells: list[str], col: dict[str, int], line: int) -> StatementRow:
    def get(name: str) -> str:
        return cells[col[name]] if col[name] < len(cells) else ""

    paid_in = _money(get("Paid In"), line, "Paid In")
    withdrawn = _money(get("Withdrawn"), line, "Withdrawn")
    if bool(paid_in) == bool(withdrawn):
        raise StatementError(line, "exactly one of Paid In and Withdrawn must hold an amount")
    direction: Direction = "in" if paid_in else "out"
    amount = abs(paid_in if paid_in else withdrawn)  # type: ignore[arg-type]
    reason = get("Reason Type").strip()
    linked = get("Linked Transaction ID").strip() if "Linked Transaction ID" in col else ""
    return StatementRow(
        line=line,
        receipt=_receipt(get("Receipt No."), line, "Receipt No."),
        completed_at=_time(get("Completion Time"), EAT, line, "Completion Time"),
        amount=amount,
        currency="KES",
        direction=direction,
        party=party_number(get("Other Party Info")),
        reference=get("A/C No.").strip() or linked,
        status=get("Transaction Status").strip().lower() or "completed",
        kind=reason,
    )


def _momo_row(cells: list[str], col: dict[str, int], line: int) -> StatementRow:
    def get(name: str) -> str:
        return cells[col[name]] if col.get(name, len(cells)) < len(cells) else ""

    signed = _money(get("Amount"), line, "Amount")
    if not signed:
        raise StatementError(line, "Amount is empty or zero")
    direction: Direction = "in" if signed > 0 else "out"
    currency = get("Currency").strip().upper()
    if not re.fullmatch(r"[A-Z]{3}", currency):
        raise StatementError(line, f"Currency {get('Currency')!r} is not an ISO code")
    status = get("Status").strip().upper()
    return StatementRow(
        line=line,
        receipt=_receipt(get("Id"), line, "Id"),
        completed_at=_time(get("Date"), UTC, line, "Date"),
        amount=abs(signed),
        currency=currency,
        direction=direction,
        party=party_number(get("From") if direction == "in" else get("To")),
        reference=get("External Transaction Id").strip(),
        status="completed" if status == "SUCCESSFUL" else status.lower(),
        kind=get("Type").strip(),
        fee=_money(get("Fee"), line, "Fee") if "Fee" in col else None,
    )


def parse_statement(
    lines: Iterable[str], source: str = "", progress: Progress | None = None
) -> Statement:
    """Parse a statement; raise ``StatementError`` at the first bad line."""
    line_no = 0
    counted = _lines(lines, progress)

    def numbered() -> Iterator[str]:
        nonlocal line_no
        for text in counted:
            line_no += 1
            yield text

    reader = csv.reader(numbered(), strict=True)
    try:
        fmt, col = _find_header(reader, lambda: line_no)
    except csv.Error as exc:
        raise StatementError(line_no, f"broken CSV: {exc}") from None
    parse_row = _mpesa_row if fmt == "mpesa" else _momo_row
    rows: list[StatementRow] = []
    seen: dict[str, int] = {}
    while True:
        start = line_no + 1  # a quoted field may span lines: name the record's first line
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise StatementError(start, f"broken CSV: {exc}") from None
        if not any(c.strip() for c in cells):
            continue  # blank line (the portal ends files with some)
        row = parse_row(cells, col, start)
        first = seen.setdefault(row.receipt, row.line)
        if first != row.line:
            raise StatementError(
                row.line, f"receipt {row.receipt} appears twice (first on line {first})"
            )
        rows.append(row)
    zone = EAT if fmt == "mpesa" else UTC
    return Statement(format=fmt, zone=zone, rows=tuple(rows), source=source)


def parse_text(text: str, source: str = "") -> Statement:
    return parse_statement(io.StringIO(text, newline=""), source)


def parse_file(path: Path, progress: Progress | None = None) -> Statement:
    """Parse a statement file (UTF-8, with or without BOM)."""
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            return parse_statement(handle, str(path), progress)
    except UnicodeDecodeError as exc:
        raise StatementError(0, f"{path} is not UTF-8 text: {exc.reason}") from None
    except OSError as exc:
        raise StatementError(0, f"cannot read {path}: {exc.strerror or exc}") from None
