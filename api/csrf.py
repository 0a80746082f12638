"""Cross-site form posts: a page of another site must not make a visitor's browser sign an
address up, change or remove anything. Browsers say where a request comes from
(``Sec-Fetch-Site``; ``Origin`` on every POST), so the check needs no token in the forms.

The JSON API needs no such check: it takes ``application/json`` bodies only, which a page
of another site cannot send without a CORS preflight this API never allows.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from aiohttp import web

# Methods that change something; a GET never does (issue 19).
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# "none": the person typed or bookmarked it, or another application opened it.
ALLOWED_FETCH_SITES = frozenset({"same-origin", "none"})


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` in lower case, the default port left out."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        return ""
    default = {"http": 80, "https": 443}.get(scheme)
    return f"{scheme}://{host}" if port in (None, default) else f"{scheme}://{host}:{port}"


def cross_site_reason(request: web.BaseRequest, own_origins: frozenset[str]) -> str | None:
    """Why this request looks like another site's, or None when it is ours or no browser's.

    ``Sec-Fetch-Site`` (sent by current browsers, not settable by a page) decides when
    present; else ``Origin`` must be one of ours (the public base URL's, or the one the
    request itself was addressed to). A request with neither comes from no current browser
    (curl, a script, a mail server's one-click POST) and cannot carry a visitor's intent.
    """
    fetch_site = request.headers.get("Sec-Fetch-Site")
    if fetch_site is not None:
        return None if fetch_site.lower() in ALLOWED_FETCH_SITES else f"Sec-Fetch-Site {fetch_site}"
    origin = request.headers.get("Origin")
    if origin is None:
        return None
    if origin.strip().lower() == "null":
        return "Origin null"  # a sandboxed frame, a data: page, a cross-origin redirect
    addressed = origin_of(f"{request.scheme}://{request.host}")
    if origin_of(origin) in own_origins | {addressed}:
        return None
    return "Origin of another site"
