"""Browser tests of the pages: the real gateway and simulator (tests/gateway fixtures), Debian's
chromium driven by Playwright, axe-core from tests/web/node_modules.

Without chromium, Playwright or axe-core the browser tests skip with the reason; under CI=true
they fail instead. Screenshots land in artifacts/screenshots/ (phone 390×844, desktop 1366×900).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.gateway.conftest import (  # noqa: F401 - fixtures, re-used here
    ADMIN_TOKEN,
    Gateway,
    Merchant,
    create_merchant,
    database_url,
    gateway,
    merchant,
    merchant_factory,
    sim,
    sim_url,
    simulator,
)

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "artifacts" / "screenshots"
AXE = Path(__file__).parent / "node_modules" / "axe-core" / "axe.min.js"
CHROMIUM = os.environ.get("LIPWA_CHROMIUM", "/usr/bin/chromium")
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1366, "height": 900}
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-gpu",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
]


def _missing() -> str | None:
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        return f"chromium not found at {CHROMIUM} (apt-get install -y chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[test]')"
    if not AXE.exists():
        return "axe-core is not installed (npm ci --prefix tests/web)"
    return None


@pytest.fixture(scope="session")
def browser(gateway: Gateway) -> Iterator[Any]:  # noqa: F811 - the imported fixture
    """Started after the gateway: sync Playwright keeps an event loop running in this thread,
    and the database fixtures use asyncio.run."""
    reason = _missing()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"browser tests cannot run under CI: {reason}")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        instance = p.chromium.launch(
            executable_path=CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium"),
            headless=True,
            args=CHROMIUM_ARGS,
        )
        yield instance
        instance.close()


@pytest.fixture
def page(gateway: Gateway, browser: Any) -> Iterator[Any]:  # noqa: F811
    """A phone-sized page. CSP is bypassed here only so axe-core can be injected with
    add_script_tag; test_pages_obey_csp runs the pages with the policy enforced."""
    context = browser.new_context(
        viewport=PHONE, base_url=gateway.url, bypass_csp=True, locale="en-GB"
    )
    context.set_default_timeout(10_000)
    tab = context.new_page()
    yield tab
    context.close()


def check_a11y(page: Any) -> None:
    """axe-core on the current page: no violation of impact serious or critical."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.add_script_tag(path=str(AXE))
    result = page.evaluate(
        """async () => {
            const r = await axe.run(document, {resultTypes: ['violations']});
            return r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))}));
        }"""
    )
    bad = [v for v in result if v["impact"] in ("serious", "critical")]
    assert not bad, f"accessibility violations on {page.url}: {bad}"


def shoot(page: Any, name: str, both: bool = True) -> None:
    """Screenshots of the current page at phone width, then desktop width (if ``both``)."""
    sizes = [("phone", PHONE), ("desktop", DESKTOP)] if both else [("phone", PHONE)]
    current = page.viewport_size
    for label, size in sizes:
        page.set_viewport_size(size)
        page.screenshot(path=str(SHOTS / f"{name}-{label}.png"), full_page=True)
    page.set_viewport_size(current)


def sign_in(page: Any, credential: str) -> None:
    page.goto("/signin")
    page.get_by_label("API key or admin token").fill(credential)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()


def create_link(owner: Merchant, **body: Any) -> dict[str, Any]:
    import uuid

    with owner.client() as c:
        response = c.post(
            "/v1/payment-links",
            json={"currency": "KES", **body},
            headers={"Idempotency-Key": str(uuid.uuid4())},
        )
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data


def set_outcome(sim_base: str, phone: str, outcome: str | None, provider: str = "mpesa") -> None:
    httpx.put(
        f"{sim_base}/_sim/scenario", json={"provider": provider, "phone": phone, "outcome": outcome}
    ).raise_for_status()


def path_of(url: str) -> str:
    return re.sub(r"^https?://[^/]+", "", url)
