"""Statement parsers: the files the simulator exports, and malformed files (errors name the
line, nothing is returned)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from lipwa.reconcile.statements import (
    EAT,
    StatementError,
    parse_file,
    parse_text,
    party_number,
)
from lipwa.simulator import momo_statement
from lipwa.simulator.app import build_app
from lipwa.simulator.core import Simulator


def mpesa_export() -> str:
    sim = Simulator(seed=1)
    app = build_app(sim)
    post = sim.ledger.post
    post("mpesa", "mpesa:174379", Decimal(10), receipt="TAB1CD2EF3", details="Pay Bill Online",
         party="254708374149", reference="order-1")  # fmt: skip
    post("mpesa", "mpesa:174379", Decimal(1500), receipt="TAB1CD2EF4", details="Pay Bill",
         party="254711222333", reference="INV 7")  # fmt: skip
    post("mpesa", "mpesa:174379", Decimal(-10), receipt="TAB1CD2EF5", details="Reversal",
         party="254708374149", reference="TAB1CD2EF3")  # fmt: skip
    text: str = app.state.daraja.statement_csv("174379")
    return text


def momo_export() -> str:
    sim = Simulator(seed=1)
    post = sim.ledger.post
    post("momo", "momo:collection:RWF", Decimal(1500), receipt="1927264368", details="PAYMENT",
         party="250788123456", reference="pay_abc")  # fmt: skip
    post("momo", "momo:disbursement:RWF", Decimal(-300), receipt="1927264369",
         details="TRANSFER", party="250788654321", reference="po_1")  # fmt: skip
    return momo_statement.statement_csv(sim.ledger.rows, {}, None)


def test_mpesa_organisation_statement_from_the_simulator() -> None:
    statement = parse_text(mpesa_export(), "sim")
    assert statement.format == "mpesa" and statement.zone == EAT
    first, second, reversal = statement.rows
    assert (first.receipt, first.amount, first.currency, first.direction) == (
        "TAB1CD2EF3", Decimal("10.00"), "KES", "in",
    )  # fmt: skip
    assert (first.party, first.reference, first.status, first.kind) == (
        "254708374149", "order-1", "completed", "Pay Bill Online",
    )  # fmt: skip
    assert first.completed_at.tzinfo is not None
    assert abs(first.completed_at - datetime.now(UTC)).total_seconds() < 60
    assert first.line == 2
    assert (second.amount, second.party, second.reference) == (
        Decimal("1500.00"), "254711222333", "INV 7",
    )  # fmt: skip
    assert (reversal.direction, reversal.amount, reversal.reference) == (
        "out", Decimal("10.00"), "TAB1CD2EF3",
    )  # fmt: skip


def test_momo_export_from_the_simulator() -> None:
    statement = parse_text(momo_export())
    assert statement.format == "momo" and statement.zone == UTC
    payment, transfer = statement.rows
    assert (payment.receipt, payment.amount, payment.currency, payment.direction) == (
        "1927264368", Decimal(1500), "RWF", "in",
    )  # fmt: skip
    assert (payment.party, payment.reference, payment.kind, payment.fee) == (
        "250788123456", "pay_abc", "PAYMENT", Decimal(0),
    )  # fmt: skip
    assert (transfer.direction, transfer.party, transfer.amount) == (
        "out", "250788654321", Decimal(300),
    )  # fmt: skip


def test_portal_preamble_bom_masked_parties_and_blank_lines_are_read(tmp_path: Path) -> None:
    body = mpesa_export().splitlines()
    masked = body[1].replace("254708374149 - ", "2547******149 - ")
    text = "\ufeffOrganization Name,Lipwa Shop\nTime Period,2026-01-01 to 2026-01-31\n\n"
    path = tmp_path / "statement.csv"
    path.write_text(text + "\n".join([body[0], masked, "", body[2]]) + "\n\n", encoding="utf-8")
    seen: list[int] = []
    statement = parse_file(path, seen.append)
    assert [r.party for r in statement.rows] == ["2547******149", "254711222333"]
    assert [r.line for r in statement.rows] == [5, 7]
    assert seen and seen[-1] == len(path.read_text(encoding="utf-8-sig"))


@pytest.mark.parametrize(
    ("party", "number"),
    [
        ("254708374149 - John Doe", "254708374149"),
        ("2547 ***** 126", "2547*****126"),
        ("0708xxx149 - J", "0708***149"),
        ("600000 - Lipwa Test Org", "600000"),
        ("", ""),
        ("Lipwa Shop", ""),
    ],
)
def test_party_numbers(party: str, number: str) -> None:
    assert party_number(party) == number


def _broken(export: str, line: int, old: str, new: str) -> str:
    lines = export.splitlines()
    assert old in lines[line - 1], (old, lines[line - 1])
    lines[line - 1] = lines[line - 1].replace(old, new, 1)
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("make", "line", "words"),
    [
        (lambda t: _broken(t, 3, "1500.00", "15OO.00"), 3, "Paid In"),
        (lambda t: _broken(t, 2, "10.00", ""), 2, "exactly one of Paid In and Withdrawn"),
        (lambda t: _broken(t, 3, "TAB1CD2EF4", ""), 3, "Receipt No. is empty"),
        (lambda t: _broken(t, 3, "TAB1CD2EF4", "TAB1CD2EF3"), 3, "appears twice (first on line 2)"),
        (lambda t: _broken(t, 4, ",-10.00,", ",yesterday,"), 4, "Withdrawn"),
        (lambda t: _broken(t, 1, "Completion Time", "When"), 1, "not a statement"),
        (lambda t: _broken(t, 1, "A/C No.", "Account"), 1, "lacks column(s) A/C No."),
        (lambda t: "hello,world\n1,2\n", 1, "not a statement"),
    ],
)
def test_malformed_mpesa_statements_name_the_line(make: object, line: int, words: str) -> None:
    text = make(mpesa_export())  # type: ignore[operator]
    with pytest.raises(StatementError) as caught:
        parse_text(text)
    assert caught.value.line == line
    assert words in str(caught.value) and str(caught.value).startswith(f"line {line}:")


def test_malformed_times_and_amounts_in_momo_exports() -> None:
    export = momo_export()
    date_text = export.splitlines()[1].split(",")[2]
    with pytest.raises(StatementError, match=r"^line 2: Date .* is not a time"):
        parse_text(_broken(export, 2, date_text, "31/31/2026 25:00"))
    with pytest.raises(StatementError, match=r"^line 3: Amount is empty or zero"):
        parse_text(_broken(export, 3, ",-300,", ",0,"))
    with pytest.raises(StatementError, match=r"^line 2: Currency"):
        parse_text(_broken(export, 2, ",RWF,", ",rw franc,"))
    with pytest.raises(StatementError, match=r"^line 4: broken CSV"):
        parse_text(export + '1,"unterminated\n' + "x" * 10 + "\n")


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(StatementError, match="cannot read"):
        parse_file(tmp_path / "missing.csv")
    binary = tmp_path / "statement.xlsx"
    binary.write_bytes(b"PK\x03\x04\xff\xfe\x00")
    with pytest.raises(StatementError, match="not UTF-8"):
        parse_file(binary)
