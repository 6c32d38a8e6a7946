"""Onboarding, the operator dashboard and the kill switches in the browser; the pages under
their real Content-Security-Policy."""

from __future__ import annotations

import re
from typing import Any

import httpx

from lipwa.simulator.core import Simulator
from tests.web.conftest import (
    ADMIN_TOKEN,
    CHROMIUM,  # noqa: F401 - documents where the browser comes from
    PHONE,
    Gateway,
    Merchant,
    check_a11y,
    create_link,
    path_of,
    shoot,
    sign_in,
)


def _bare_merchant(gateway: Gateway) -> tuple[str, str]:
    """A merchant with an API key and no provider account yet."""
    with gateway.admin() as admin:
        merchant = admin.post("/admin/v1/merchants", json={"name": "Mama Njeri's Kiosk"}).json()
        key = admin.post(
            f"/admin/v1/merchants/{merchant['id']}/api-keys", json={"mode": "test"}
        ).json()
    return merchant["id"], key["key"]


def test_onboarding_adds_an_account_and_its_test_payment_goes_green(
    page: Any, gateway: Gateway, sim: Simulator, sim_url: str
) -> None:
    merchant_id, api_key = _bare_merchant(gateway)
    creds = httpx.get(f"{sim_url}/_sim/credentials").json()["mpesa"]
    sign_in(page, api_key)
    page.wait_for_url(re.compile(f".*/merchants/{merchant_id}$"))
    page.get_by_text("No provider account yet").wait_for()
    form = page.locator("form").filter(has=page.locator("input[value=mpesa]"))
    form.get_by_label("Label").fill("Kiosk paybill")
    form.get_by_label("Shortcode").fill(creds["paybill"]["shortcode"])
    form.get_by_label("Consumer key").fill(creds["consumer_key"])
    form.get_by_label("Consumer secret").fill(creds["consumer_secret"])
    form.get_by_label("Passkey").fill(creds["paybill"]["passkey"])
    form.get_by_label("Provider URL").fill(sim_url)
    form.get_by_role("button", name="Add M-Pesa account").click()
    page.get_by_text("added. Send a test payment").wait_for()
    account = page.locator("li.account").first
    assert account.get_by_test_id("setup-status").inner_text() == "pending"
    html = page.content()
    for secret in (creds["consumer_key"], creds["consumer_secret"], creds["paybill"]["passkey"]):
        assert secret not in html  # write-only
    assert "********" in account.inner_text()
    check_a11y(page)
    shoot(page, "onboarding")

    account.get_by_label(re.compile("Your phone for a KES 1 test payment")).fill("0708374149")
    account.get_by_role("button", name="Send test payment").click()
    page.get_by_test_id("test-outcome").get_by_text("Test payment succeeded").wait_for(
        timeout=15_000
    )
    assert page.locator(".outcome .badge").inner_text() == "tested"
    check_a11y(page)
    shoot(page, "onboarding-test-payment")
    page.get_by_role("link", name="Back to setup").click()
    assert page.locator("li.account").first.get_by_test_id("setup-status").inner_text() == (
        "tested"
    )
    assert page.get_by_role("link", name="Mark live…").count() == 0  # operators only

    # The operator makes it live, with a confirm step and a reason.
    sign_in(page, ADMIN_TOKEN)
    page.goto(f"/merchants/{merchant_id}")
    page.get_by_role("link", name="Mark live…").click()
    page.get_by_label("Reason").fill("Checklist done with the merchant")
    page.get_by_label("I checked the go-live list").check()
    page.get_by_role("button", name="Mark live").click()
    page.get_by_text("is live.").wait_for()
    assert page.locator("li.account").first.get_by_test_id("setup-status").inner_text() == "live"


def test_dashboard_shows_a_timeline_and_charts(
    page: Any, merchant: Merchant, sim: Simulator
) -> None:
    paid = merchant.pay(amount="75", currency="KES", phone="0708374149", reference="dash-1")
    failed = merchant.pay(amount="76", currency="KES", phone="0708371032", reference="dash-2")
    payment = merchant.wait_final(paid.json()["id"])
    merchant.wait_final(failed.json()["id"])
    assert payment["status"] == "succeeded"
    sign_in(page, ADMIN_TOKEN)
    page.wait_for_url(re.compile(".*/dashboard$"))
    page.set_viewport_size({"width": 1366, "height": 900})
    volume = page.locator("#chart-volume svg")
    assert volume.get_attribute("role") == "img"
    assert volume.locator("polyline, circle").count() > 0
    assert page.locator("#chart-failures svg text", has_text="payer_declined").count() == 1
    check_a11y(page)
    shoot(page, "dashboard")

    page.get_by_role("link", name="Payments", exact=True).click()
    page.get_by_label("Search").fill(payment["id"])
    page.get_by_role("button", name="Filter").click()
    rows = page.locator("table.payments tbody tr")
    assert rows.count() == 1
    page.get_by_label("Status").select_option("failed")
    page.get_by_label("Search").fill("")
    page.get_by_label("Merchant id").fill(merchant.id)
    page.get_by_role("button", name="Filter").click()
    assert rows.count() == 1 and "payer_declined" in rows.first.inner_text()
    check_a11y(page)
    shoot(page, "dashboard-payments")

    page.goto(f"/dashboard/payments/{payment['id']}")
    timeline = page.locator("#timeline")
    kinds = timeline.locator("li").evaluate_all("els => els.map(e => e.dataset.kind)")
    assert kinds[:2] == ["request", "provider"]
    assert {"callback", "event", "final"} <= set(kinds)
    callback = timeline.locator("li[data-kind=callback]").first
    callback.get_by_text("Raw body").click()
    assert "ResultCode" in callback.locator("pre").inner_text()  # the provider's own words
    assert payment["receipt"] in timeline.inner_text()
    check_a11y(page)
    shoot(page, "dashboard-timeline")


def test_switched_off_checkout_refuses_politely(
    page: Any, merchant: Merchant, sim: Simulator
) -> None:
    link = create_link(merchant, amount="40")
    account_id = merchant.accounts["mpesa"]["id"]
    sign_in(page, ADMIN_TOKEN)

    def switch(key: str, state: str) -> None:
        page.goto("/dashboard/flags")
        page.get_by_label("Key", exact=True).fill(key)
        page.get_by_label("State").select_option(state)
        page.get_by_label("Reason").fill("Test: provider incident drill")
        page.get_by_role("button", name="Review change…").click()
        page.get_by_role("heading", name=re.compile("Confirm: switch")).wait_for()
        page.get_by_role("button", name=f"Yes, switch {state}").click()
        page.get_by_text(f"Switch {key} is now {state}.").wait_for()

    # The account's switch: the page opens, the submit is refused before any prompt.
    switch(f"account:{account_id}", "off")
    row = page.locator(f"tr[data-key='account:{account_id}']")
    assert "off" in row.inner_text()
    check_a11y(page)
    shoot(page, "dashboard-flags")
    page.goto(path_of(link["url"]))
    page.locator("#phone").fill("0708374149")
    page.get_by_role("button", name=re.compile("Pay")).click()
    page.get_by_role("alert").get_by_text("Payments to Test shop are paused right now").wait_for()
    check_a11y(page)
    shoot(page, "checkout-paused", both=False)
    switch(f"account:{account_id}", "on")

    # The merchant's switch: the link page says so at once, with no form at all.
    switch(f"merchant:{merchant.id}", "off")
    page.goto(path_of(link["url"]))
    page.get_by_text("are paused right now").wait_for()
    assert page.locator("#phone").count() == 0
    switch(f"merchant:{merchant.id}", "on")
    page.goto(path_of(link["url"]))
    assert page.locator("#phone").count() == 1
    with merchant.client() as c:
        assert c.get("/v1/payments", params={"reference": link["id"]}).json()["data"] == []


def test_pages_obey_their_content_security_policy(
    browser: Any, gateway: Gateway, merchant: Merchant
) -> None:
    """No bypass here: scripts, styles and charts must all work under the strict policy."""
    link = create_link(merchant, amount="10")
    context = browser.new_context(viewport=PHONE, base_url=gateway.url)
    page = context.new_page()
    violations: list[str] = []
    page.on(
        "console",
        lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None,
    )
    try:
        page.goto(path_of(link["url"]))
        page.locator("#phone").fill("0708374149")
        page.locator("#network").get_by_text("Safaricom").wait_for()  # the script ran
        assert (
            page.locator("button[type=submit]").evaluate("b => getComputedStyle(b).backgroundColor")
            == "rgb(11, 107, 58)"
        )  # the stylesheet applied
        sign_in(page, ADMIN_TOKEN)
        page.goto("/dashboard")
        assert page.locator("svg.chart").count() >= 4
        page.goto("/dashboard/doctor")
        page.get_by_role("heading", name="Doctor").wait_for()
        assert page.locator(".checks li").count() > 0, page.locator("main").inner_text()
        shoot(page, "dashboard-doctor")
    finally:
        context.close()
    assert violations == []
