"""Payment links over the API, the public QR codes and network hint, the page security
(headers, CSRF, sessions) over plain HTTP."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import httpx

from lipwa.simulator.core import Simulator
from tests.gateway.conftest import add_till_account
from tests.web.conftest import ADMIN_TOKEN, Merchant, create_link, path_of


def test_create_link_needs_idempotency_key_and_replays(merchant: Merchant) -> None:
    with merchant.client() as c:
        body = {"amount": "250", "currency": "KES", "description": "Lunch", "single_use": True}
        assert c.post("/v1/payment-links", json=body).status_code == 400
        key = str(uuid.uuid4())
        first = c.post("/v1/payment-links", json=body, headers={"Idempotency-Key": key})
        again = c.post("/v1/payment-links", json=body, headers={"Idempotency-Key": key})
        other = c.post(
            "/v1/payment-links", json={**body, "amount": "300"}, headers={"Idempotency-Key": key}
        )
    assert first.status_code == 201, first.text
    link = first.json()
    assert link["object"] == "payment_link"
    assert link["amount"] == "250.00" and link["single_use"] is True
    assert link["url"].endswith(f"/l/{link['slug']}") and len(link["slug"]) >= 8
    assert again.status_code == 201 and again.json()["id"] == link["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert other.status_code == 409


def test_concurrent_twins_get_one_link_and_another_mode_never_its_answer(
    merchant: Merchant,
) -> None:
    body = {"amount": "250", "currency": "KES", "description": "Lunch"}
    key = str(uuid.uuid4())

    def twin(_: int) -> httpx.Response:
        # Threads, not asyncio: the browser tests' Playwright keeps an event loop running here.
        with merchant.client() as c:
            return c.post("/v1/payment-links", json=body, headers={"Idempotency-Key": key})

    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(twin, range(6)))
    assert [a.status_code for a in answers] == [201] * 6, [a.text for a in answers]
    assert len({a.json()["id"] for a in answers}) == 1
    with merchant.gateway.admin() as admin:
        live = admin.post(f"/admin/v1/merchants/{merchant.id}/api-keys", json={"mode": "live"})
    with merchant.gateway.client(live.json()["key"]) as c:
        crossed = c.post("/v1/payment-links", json=body, headers={"Idempotency-Key": key})
    assert crossed.status_code == 409  # never the test link
    assert crossed.json()["error"]["code"] == "idempotency_key_reused"


def test_link_validation(merchant: Merchant) -> None:
    with merchant.client() as c:

        def post(body: dict[str, object]) -> httpx.Response:
            return c.post(
                "/v1/payment-links", json=body, headers={"Idempotency-Key": str(uuid.uuid4())}
            )

        assert post({"currency": "KES", "amount": "1.234"}).json()["error"]["code"] == (
            "invalid_amount"
        )
        assert post({"currency": "RWF"}).json()["error"]["code"] == "currency_not_supported"
        past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
        assert post({"currency": "KES", "expires_at": past}).json()["error"]["code"] == (
            "expires_in_past"
        )
        # A fixed amount no payer could pay, and an expiry beyond what the store holds.
        for amount, code in (("150.50", "amount_not_whole"), ("300000", "amount_too_large")):
            refused = post({"currency": "KES", "amount": amount})
            assert refused.status_code == 400 and refused.json()["error"]["code"] == code
            assert refused.json()["error"]["param"] == "amount"
        far = post({"currency": "KES", "expires_at": "9999-12-31T23:59:59-05:00"})
        assert far.status_code == 400 and far.json()["error"]["code"] == "invalid_expires_at"
        open_link = post({"currency": "KES"})
        assert open_link.status_code == 201 and open_link.json()["amount"] is None
        read = c.get(f"/v1/payment-links/{open_link.json()['id']}")
        assert read.status_code == 200 and read.json()["id"] == open_link.json()["id"]
        listed = c.get("/v1/payment-links").json()["data"]
        assert open_link.json()["id"] in [row["id"] for row in listed]


def test_other_merchant_cannot_read_link(merchant: Merchant, merchant_factory) -> None:  # type: ignore[no-untyped-def]
    link = create_link(merchant, amount="10")
    other = merchant_factory()
    with other.client() as c:
        assert c.get(f"/v1/payment-links/{link['id']}").status_code == 404


def test_qr_codes_and_network_hint(merchant: Merchant) -> None:
    link = create_link(merchant, amount="10")
    base = merchant.gateway.url
    png = httpx.get(base + path_of(link["qr_png_url"]))
    svg = httpx.get(base + path_of(link["qr_svg_url"]))
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
    assert svg.status_code == 200 and b"<svg" in svg.content
    hint = httpx.get(f"{base}/l/{link['slug']}/network", params={"phone": "0708 374 149"}).json()
    assert hint["network"] == "safaricom" and hint["supported"] is True
    assert "Safaricom" in hint["label"]
    airtel = httpx.get(f"{base}/l/{link['slug']}/network", params={"phone": "0733123456"}).json()
    assert airtel["supported"] is False
    assert httpx.get(f"{base}/l/nosuchlink").status_code == 404


def test_page_headers_and_csrf(merchant: Merchant) -> None:
    link = create_link(merchant, amount="10")
    with httpx.Client(base_url=merchant.gateway.url) as c:
        page = c.get(f"/l/{link['slug']}")
        assert page.status_code == 200
        csp = page.headers["content-security-policy"]
        assert "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
        assert "script-src 'self'" in csp
        assert page.headers["x-frame-options"] == "DENY"
        assert page.headers["x-content-type-options"] == "nosniff"
        assert page.headers["referrer-policy"] == "same-origin"
        cookie = page.headers["set-cookie"]
        assert "lipwa_csrf=" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
        assert 'style="' not in page.text and "<script>" not in page.text
        # A POST without the form's token (cross-site) never reaches the provider.
        forged = c.post(f"/l/{link['slug']}", data={"phone": "0708374149", "attempt": "x" * 20})
        assert forged.status_code == 403
        assert c.get("/openapi.json").headers.get("content-security-policy") is None


def test_sign_in_sessions(merchant: Merchant) -> None:
    with httpx.Client(base_url=merchant.gateway.url) as c:
        assert c.get("/dashboard").status_code == 303
        form = c.get("/signin")
        token = form.text.split('name="csrf_token" value="')[1].split('"')[0]
        bad = c.post("/signin", data={"credential": "nope", "csrf_token": token})
        assert bad.status_code == 401
        no_csrf = c.post("/signin", data={"credential": ADMIN_TOKEN})
        assert no_csrf.status_code == 403
        ok = c.post("/signin", data={"credential": ADMIN_TOKEN, "csrf_token": token})
        assert ok.status_code == 303 and ok.headers["location"] == "/dashboard"
        session_cookie = ok.headers["set-cookie"]
        assert "lipwa_session=" in session_cookie
        assert "HttpOnly" in session_cookie and "SameSite=lax" in session_cookie
        assert ADMIN_TOKEN not in session_cookie
        dashboard = c.get("/dashboard")
        assert dashboard.status_code == 200 and ADMIN_TOKEN not in dashboard.text
        assert dashboard.headers["cache-control"] == "no-store"
        # Date filters the store cannot hold are ignored, not a 500.
        far = c.get("/dashboard/payments", params={"from": "0001-01-01", "to": "9999-12-31"})
        assert far.status_code == 200
        # A tampered cookie is no session at all.
        # (a middle character of the signature: the last one may carry only padding bits)
        cookie = c.cookies["lipwa_session"]
        forged = cookie[:-5] + ("A" if cookie[-5] != "A" else "B") + cookie[-4:]
        c.cookies.set("lipwa_session", forged)
        assert c.get("/dashboard").status_code == 303
        c.cookies.clear()
        token = c.get("/signin").text.split('name="csrf_token" value="')[1].split('"')[0]
        # A merchant key opens its own setup page only, never the dashboard.
        ok = c.post("/signin", data={"credential": merchant.api_key, "csrf_token": token})
        assert ok.headers["location"] == f"/merchants/{merchant.id}"
        assert c.get("/dashboard").status_code == 403
        page = c.get(f"/merchants/{merchant.id}")
        assert page.status_code == 200 and merchant.api_key not in page.text
        assert c.get("/merchants/mer_someoneelse").status_code == 404
        # An open redirect through ?next= is refused.
        ok = c.post(
            "/signin",
            data={"credential": merchant.api_key, "csrf_token": token, "next": "//evil.example"},
        )
        assert ok.headers["location"] == f"/merchants/{merchant.id}"


def test_a_single_use_link_is_busy_while_its_prompt_is_being_sent(
    merchant: Merchant, sim: Simulator, sim_url: str
) -> None:
    """Daraja takes its time to answer the first payer's push: a second payer meanwhile finds
    the link busy, because the payment is tied to the link before the provider call."""
    link = create_link(merchant, amount="10", single_use=True)
    sim.settings.prompt_seconds = 5.0
    httpx.put(f"{sim_url}/_sim/faults", json={"answer_delay_ms": 1500}).raise_for_status()
    slug = link["slug"]

    def pay() -> httpx.Response:
        with httpx.Client(base_url=merchant.gateway.url, timeout=30) as c:
            page = c.get(f"/l/{slug}").text
            form = {
                name: page.split(f'name="{name}" value="')[1].split('"')[0]
                for name in ("csrf_token", "attempt")
            }
            return c.post(f"/l/{slug}", data={"phone": "0708374149", **form})

    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(pay)
        time.sleep(0.7)  # the first push is at the simulator, its answer held back
        assert not first.done()
        second = httpx.get(f"{merchant.gateway.url}/l/{slug}")
        assert first.result().status_code == 303
    assert 'name="attempt"' not in second.text  # no form to pay with
    assert "A payment through this link is in progress" in second.text
    with merchant.client() as api:
        payments = api.get("/v1/payments", params={"reference": link["id"]}).json()["data"]
    assert len(payments) == 1


def test_a_test_key_session_never_sees_production_callback_urls(merchant: Merchant) -> None:
    with merchant.gateway.admin() as admin:
        production = admin.post(
            f"/admin/v1/merchants/{merchant.id}/accounts",
            json={
                "provider": "mpesa",
                "environment": "production",
                "credentials": {
                    "consumer_key": "FAKE-key", "consumer_secret": "FAKE-secret",
                    "shortcode": "600000", "kind": "paybill", "passkey": "FAKE-passkey",
                },
            },
        ).json()  # fmt: skip
    sandbox_url = merchant.accounts["mpesa"]["callback_url"]
    with httpx.Client(base_url=merchant.gateway.url) as c:
        token = c.get("/signin").text.split('name="csrf_token" value="')[1].split('"')[0]
        c.post("/signin", data={"credential": merchant.api_key, "csrf_token": token})
        page = c.get(f"/merchants/{merchant.id}").text
    assert sandbox_url in page
    assert production["callback_url"] not in page and production["id"] not in page
    with httpx.Client(base_url=merchant.gateway.url) as c:
        token = c.get("/signin").text.split('name="csrf_token" value="')[1].split('"')[0]
        c.post("/signin", data={"credential": ADMIN_TOKEN, "csrf_token": token})
        assert production["callback_url"] in c.get(f"/merchants/{merchant.id}").text


def send_setup_test(c: httpx.Client, merchant: Merchant, account_id: str) -> str:
    """Sign in with the merchant's key and send the setup page's test payment through
    ``account_id``; the path of its result page."""
    token = c.get("/signin").text.split('name="csrf_token" value="')[1].split('"')[0]
    c.post("/signin", data={"credential": merchant.api_key, "csrf_token": token})
    page = c.get(f"/merchants/{merchant.id}").text
    form = {
        name: page.split(f'name="{name}" value="')[1].split('"')[0]
        for name in ("csrf_token", "attempt")
    }
    sent = c.post(f"/merchants/{merchant.id}/accounts/{account_id}/test",
                  data={"phone": "0708374149", **form})  # fmt: skip
    assert sent.status_code == 303, sent.text
    return str(sent.headers["location"])


def test_a_setup_test_payment_goes_through_the_account_being_tested(
    merchant: Merchant, sim_url: str
) -> None:
    till = add_till_account(merchant.gateway, merchant.id, sim_url)
    with httpx.Client(base_url=merchant.gateway.url) as c:
        payment_id = send_setup_test(c, merchant, till["id"]).rsplit("/", 1)[-1]
    with merchant.client() as api:
        assert api.get(f"/v1/payments/{payment_id}").json()["account_id"] == till["id"]


def test_a_setup_test_result_is_only_shown_to_a_session_of_its_mode(merchant: Merchant) -> None:
    with httpx.Client(base_url=merchant.gateway.url) as c:
        result_path = send_setup_test(c, merchant, merchant.accounts["mpesa"]["id"])
        assert c.get(result_path).status_code == 200
    with merchant.gateway.admin() as admin:
        live_key = admin.post(
            f"/admin/v1/merchants/{merchant.id}/api-keys", json={"mode": "live"}
        ).json()["key"]
    with httpx.Client(base_url=merchant.gateway.url) as c:
        token = c.get("/signin").text.split('name="csrf_token" value="')[1].split('"')[0]
        signed_in = c.post("/signin", data={"credential": live_key, "csrf_token": token})
        assert signed_in.status_code == 303
        # The test-mode payment and its payer's /c/ link stay out of a live session, as in the API.
        assert c.get(result_path).status_code == 404


def test_two_payers_at_once_pay_a_single_use_link_once(merchant: Merchant, sim: Simulator) -> None:
    link = create_link(merchant, amount="10", single_use=True)
    sim.settings.prompt_seconds = 5.0  # the first payment stays open meanwhile
    slug = link["slug"]
    clients = [httpx.Client(base_url=merchant.gateway.url, timeout=30) for _ in range(4)]
    forms = []
    for c in clients:  # each payer opens the page first
        page = c.get(f"/l/{slug}").text
        forms.append({
            name: page.split(f'name="{name}" value="')[1].split('"')[0]
            for name in ("csrf_token", "attempt")
        })  # fmt: skip

    def submit(i: int) -> httpx.Response:
        return clients[i].post(f"/l/{slug}", data={"phone": f"07083741{60 + i}", **forms[i]})

    with ThreadPoolExecutor(len(clients)) as pool:
        answers = list(pool.map(submit, range(len(clients))))
    for c in clients:
        c.close()
    assert sorted(a.status_code for a in answers) == [303] + [409] * (len(clients) - 1)
    refused = next(a for a in answers if a.status_code == 409)
    assert "A payment through this link is in progress" in refused.text
    with merchant.client() as api:
        payments = api.get("/v1/payments", params={"reference": link["id"]}).json()["data"]
    assert len(payments) == 1


def test_a_single_use_link_closes_when_paid_even_if_the_payer_never_looks_again(
    merchant: Merchant, sim: Simulator
) -> None:
    """The payer submits, approves on the phone and closes the tab: the callback alone marks
    the link used for the merchant (and for paybill payments naming it)."""
    link = create_link(merchant, amount="10", single_use=True)
    with httpx.Client(base_url=merchant.gateway.url, timeout=30) as payer:
        page = payer.get(f"/l/{link['slug']}").text
        form = {
            name: page.split(f'name="{name}" value="')[1].split('"')[0]
            for name in ("csrf_token", "attempt")
        }
        sent = payer.post(f"/l/{link['slug']}", data={"phone": "0708374170", **form})
        assert sent.status_code == 303
    with merchant.client() as api:
        [payment] = api.get("/v1/payments", params={"reference": link["id"]}).json()["data"]
    assert merchant.wait_final(payment["id"])["status"] == "succeeded"
    with merchant.client() as api:
        assert api.get(f"/v1/payment-links/{link['id']}").json()["status"] == "used"


def test_a_number_of_another_country_is_a_phone_error_on_the_checkout(
    merchant: Merchant,
) -> None:
    """The payer is told to check the number, not that something broke on our side."""
    link = create_link(merchant, amount="10")
    with httpx.Client(base_url=merchant.gateway.url, timeout=30) as payer:
        for number in ("+255712345678", "0712345678x"):
            page = payer.get(f"/l/{link['slug']}").text
            form = {
                name: page.split(f'name="{name}" value="')[1].split('"')[0]
                for name in ("csrf_token", "attempt")
            }
            refused = payer.post(f"/l/{link['slug']}", data={"phone": number, **form})
            assert refused.status_code == 400, number
            assert "Check the number" in refused.text and "on our side" not in refused.text
