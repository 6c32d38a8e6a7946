"""A payer pays through a link in the browser: success, cancel, insufficient funds, retry."""

from __future__ import annotations

import re
from typing import Any

import httpx

from lipwa.simulator.core import Simulator
from tests.web.conftest import (
    Merchant,
    check_a11y,
    create_link,
    path_of,
    set_outcome,
    shoot,
)

RECEIPT = re.compile(r".*/c/[^/]+/receipt$")
PROGRESS = re.compile(r".*/c/[^/]+$")


def _pay(page: Any, link: dict[str, Any], phone: str, lang: str = "") -> None:
    page.goto(path_of(link["url"]) + (f"?lang={lang}" if lang else ""))
    page.locator("#phone").fill(phone)
    page.locator("form.pay button[type=submit]").click()


def test_payer_pays_through_a_link(page: Any, merchant: Merchant, sim: Simulator) -> None:
    sim.settings.prompt_seconds = 1.5  # long enough to see the live progress
    link = create_link(merchant, amount="1250", description="Table 4 · dinner", single_use=True)
    page.goto(path_of(link["url"]))
    assert page.get_by_role("heading", level=1).inner_text() == "KES 1,250.00"
    page.locator("#phone").fill("0708 374 149")
    page.locator("#network").get_by_text("Network: Safaricom M-Pesa").wait_for()
    check_a11y(page)
    shoot(page, "checkout")
    page.get_by_role("button", name="Pay KES 1,250.00").click()
    page.wait_for_url(PROGRESS)
    page.get_by_text("Check your phone").wait_for()
    assert "Safaricom M-Pesa" in page.locator(".network").inner_text()
    check_a11y(page)
    shoot(page, "checkout-progress", both=False)
    page.wait_for_url(RECEIPT, timeout=15_000)  # pushed by server-sent events
    receipt = page.locator("#receipt-number").inner_text()
    assert re.fullmatch(r"[A-Z0-9]{10}", receipt), receipt
    body = page.locator("main").inner_text()
    assert "Test shop" in body and "KES 1,250.00" in body and "Table 4 · dinner" in body
    assert page.get_by_role("button", name="Print receipt").is_visible()
    check_a11y(page)
    shoot(page, "receipt")
    # Single use: the link is closed now, politely.
    page.goto(path_of(link["url"]))
    page.get_by_text("This payment link has already been paid.").wait_for()


def test_cancel_and_insufficient_funds_in_plain_words(
    page: Any, merchant: Merchant, sim: Simulator
) -> None:
    link = create_link(merchant, description="Open tab")  # open amount: the payer types it
    page.goto(path_of(link["url"]))
    page.locator("#amount").fill("120")
    page.locator("#phone").fill("0708371032")  # the simulator's "cancelled" number
    page.get_by_role("button", name="Pay").click()
    page.get_by_text("You cancelled on your phone.").wait_for(timeout=15_000)
    assert page.get_by_role("button", name=re.compile("Try again")).is_visible()
    check_a11y(page)
    shoot(page, "checkout-cancelled")

    page.goto(path_of(link["url"]) + "?lang=sw")  # Swahili, remembered by a cookie
    assert page.get_by_role("button", name="Lipa").is_visible()
    page.locator("#amount").fill("80")
    page.locator("#phone").fill("0708370001")  # "insufficient funds"
    page.get_by_role("button", name="Lipa").click()
    page.get_by_text("Salio halitoshi.").wait_for(timeout=15_000)
    assert page.locator("html").get_attribute("lang") == "sw"
    check_a11y(page)
    shoot(page, "checkout-insufficient-sw", both=False)


def test_retry_after_failure_then_success(
    page: Any, merchant: Merchant, sim: Simulator, sim_url: str
) -> None:
    link = create_link(merchant, amount="300", description="Taxi")
    set_outcome(sim_url, "254708374150", "insufficient_funds")
    _pay(page, link, "+254 708 374 150", lang="en")
    page.get_by_text("Not enough balance.").wait_for(timeout=15_000)
    set_outcome(sim_url, "254708374150", None)  # the payer topped up
    page.get_by_role("button", name=re.compile("Try again")).click()
    page.wait_for_url(RECEIPT, timeout=15_000)
    assert page.locator("#receipt-number").inner_text() != "—"
    with merchant.client() as c:
        payments = c.get("/v1/payments", params={"reference": link["id"]}).json()["data"]
    assert sorted(p["status"] for p in payments) == ["failed", "succeeded"]
    assert {p["failure_code"] for p in payments} == {"insufficient_funds", None}


def test_bad_number_is_refused_before_any_prompt(page: Any, merchant: Merchant) -> None:
    link = create_link(merchant, amount="50")
    _pay(page, link, "0733123456")  # Airtel Kenya: no M-Pesa
    page.get_by_role("alert").get_by_text(
        "can't take payments from this number's network"
    ).wait_for()
    assert page.locator("#phone").get_attribute("aria-invalid") == "true"
    check_a11y(page)
    with merchant.client() as c:
        assert c.get("/v1/payments", params={"reference": link["id"]}).json()["data"] == []
    assert httpx.get(link["qr_svg_url"]).status_code == 200
