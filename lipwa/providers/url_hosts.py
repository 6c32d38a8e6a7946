"""The host a provider URL reaches, read as httpx (which sends every request) reads it."""

from __future__ import annotations

import httpx


def host_of(url: str) -> str:
    """The lower-case host of ``url`` (a bare host name is accepted too), IDNA-normalised as
    httpx connects to it: ``api。safaricom。co。ke`` (ideographic or full-width dots) is
    ``api.safaricom.co.ke``, so a look-alike spelling cannot pass for another host. Empty
    when it is not a URL at all."""
    text = url.strip()
    if "://" not in text:
        text = "//" + text
    try:
        host = httpx.URL(text).host
    except (httpx.InvalidURL, ValueError, TypeError):
        return ""
    return host.rstrip(".").lower()
