"""Rendering pages: one Jinja2 environment, the CSRF token, the language, formatting helpers."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from lipwa.domain.money import PROVIDER_NAMES, format_amount
from lipwa.web import i18n
from lipwa.web.security import LANG_COOKIE, Session, WebSecurity

HERE = Path(__file__).parent
TIME_ZONES = {"KES": "Africa/Nairobi", "RWF": "Africa/Kigali", "UGX": "Africa/Kampala"}

env = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(["html", "svg"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


def money(amount: Decimal | str | None, currency: str) -> str:
    """``KES 1,250.00`` (thousands grouped; the currency's own decimals)."""
    if amount is None:
        return ""
    text = format_amount(Decimal(amount), currency) if not isinstance(amount, str) else amount
    whole, _, fraction = text.partition(".")
    grouped = f"{int(whole):,}"
    return f"{currency} {grouped}.{fraction}" if fraction else f"{currency} {grouped}"


def local_time(value: datetime | None, currency: str = "", with_zone: bool = True) -> str:
    """A time in the payer's country (EAT / CAT), else UTC: ``3 Mar 2025, 14:05 EAT``."""
    if value is None:
        return ""
    zone_name = TIME_ZONES.get(currency)
    try:
        zone = ZoneInfo(zone_name) if zone_name else UTC
    except ZoneInfoNotFoundError:
        zone = UTC
    local = value.astimezone(zone)
    text = f"{local.day} {local:%b %Y, %H:%M}"
    return f"{text} {local.tzname()}" if with_zone else text


def utc_time(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if value else ""


def utc_time_ms(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%H:%M:%S.%f")[:-3] if value else ""


def pretty(raw: str) -> str:
    """A JSON body indented for reading; anything else as it came."""
    try:
        return json.dumps(json.loads(raw), indent=2, ensure_ascii=False)
    except ValueError:
        return raw


def masked_phone(msisdn: str | None) -> str:
    if not msisdn:
        return ""
    # No-break spaces: the number never wraps in the middle.
    return f"+{msisdn[:3]}\u00a0•••\u00a0••{msisdn[-3:]}" if len(msisdn) > 6 else "•••"


def provider_name(provider: str) -> str:
    return PROVIDER_NAMES.get(provider, provider)


env.filters.update(
    money=money,
    local_time=local_time,
    utc_time=utc_time,
    utc_time_ms=utc_time_ms,
    masked_phone=masked_phone,
    pretty=pretty,
)
env.globals.update(provider_name=provider_name, networks=i18n.NETWORKS)


def security(request: Request) -> WebSecurity:
    found: WebSecurity = request.app.state.web_security
    return found


def render(
    request: Request,
    template: str,
    *,
    status: int = 200,
    session: Session | None = None,
    lang: str | None = None,
    **context: Any,
) -> HTMLResponse:
    """Render ``template`` with the CSRF token, the language and the session (re-signed)."""
    web = security(request)
    nonce, new_nonce = web.csrf_nonce(request)
    lang = lang or i18n.DEFAULT
    html = env.get_template(template).render(
        request=request,
        csrf_token=web.csrf_token(nonce),
        lang=lang,
        languages=i18n.LANGUAGES,
        t=partial(i18n.t, lang),
        session=session,
        **context,
    )
    response = HTMLResponse(html, status_code=status)
    if new_nonce:
        web.set_csrf_cookie(response, nonce)
    if session is not None:
        web.write_session(response, session)
        response.headers["cache-control"] = "no-store"
    return response


def page_language(request: Request) -> str:
    return i18n.choose(
        request.query_params.get("lang"),
        request.cookies.get(LANG_COOKIE),
        request.headers.get("accept-language"),
    )


def remember_language(request: Request, response: Response, lang: str) -> None:
    if request.query_params.get("lang") == lang:
        response.set_cookie(
            LANG_COOKIE,
            lang,
            max_age=365 * 24 * 3600,
            samesite="lax",
            secure=security(request).secure,
            httponly=True,
        )


def svg(markup: str) -> Markup:
    """Mark SVG built by lipwa.web.charts (which escapes every text it places) as safe."""
    return Markup(markup)  # noqa: S704 - charts.py escapes all text it embeds
