"""Pages people use: hosted checkout, merchant onboarding, operator dashboard.

``install(app, settings)`` adds the routers, the static files and the page security headers.
Templates (Jinja2) and the one CSS and JS file live beside this module; no build step.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from lipwa.config import Settings
from lipwa.web.render import HERE
from lipwa.web.security import PageHeaders, WebSecurity
from lipwa.web.stream_slots import StreamSlots


def install(app: FastAPI, settings: Settings) -> None:
    from lipwa.web import routes_checkout, routes_dashboard, routes_links, routes_merchant

    app.state.web_security = WebSecurity(settings)
    app.state.stream_slots = StreamSlots()
    app.include_router(routes_links.router)
    app.include_router(routes_links.public)
    app.include_router(routes_checkout.router)
    app.include_router(routes_merchant.router)
    app.include_router(routes_dashboard.router)
    app.mount("/static/web", StaticFiles(directory=HERE / "static"), name="web-static")
    app.add_middleware(PageHeaders, hsts=settings.public_url.startswith("https://"))
