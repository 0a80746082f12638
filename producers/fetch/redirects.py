"""One GET, following redirects by hand so that every hop passes the URL guard (a redirect to
``http://169.254.169.254/`` is refused like a subscription to it would be), and reading the
body under a size cap (counted after decompression, so a small gzip bomb is caught too)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import aiohttp
from yarl import URL

from pricewatch.urlguard import check_host

MAX_REDIRECTS = 5
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
READ_CHUNK_BYTES = 64 * 1024


class ResponseTooLarge(Exception):
    pass


class TooManyRedirects(Exception):
    pass


@dataclass(frozen=True)
class Response:
    """What a GET answered, after its redirects."""

    status: int
    final_url: URL
    body: bytes
    charset: str | None
    etag: str | None = None
    last_modified: str | None = None
    retry_after: str | None = None
    # Header names lower-cased (the first value of each): read by the block detector.
    headers: Mapping[str, str] = field(default_factory=dict)


async def get_following_redirects(
    session: aiohttp.ClientSession,
    url: str,
    *,
    allowed: frozenset[str],
    max_bytes: int,
    truncate_at: int | None = None,
    json_api: bool = False,
    conditional: Mapping[str, Mapping[str, str]] | None = None,
) -> Response:
    """GET ``url``, following up to ``MAX_REDIRECTS`` redirects, each hop through the guard.

    ``conditional`` maps a URL to the validators to send when the request reaches it (they
    belong to the URL that answered 200, after any redirects). A body over ``max_bytes``
    raises ``ResponseTooLarge``, unless ``truncate_at`` is given: then it is cut there.
    """
    current = url
    for _ in range(MAX_REDIRECTS + 1):
        check_host(current, allowed)
        headers: dict[str, str] = {}
        if json_api:
            headers["Accept"] = "application/json"
        if conditional is not None and current in conditional:
            headers |= conditional[current]
        async with session.get(current, allow_redirects=False, headers=headers or None) as response:
            location = response.headers.get("Location")
            if response.status in REDIRECT_STATUSES and location:
                current = str(response.url.join(URL(location)))
                continue
            body = await read_capped(response, max_bytes, truncate_at)
            return Response(
                status=response.status,
                final_url=response.url,
                body=body,
                charset=charset_of(response),
                etag=response.headers.get("ETag"),
                last_modified=response.headers.get("Last-Modified"),
                retry_after=response.headers.get("Retry-After"),
                headers=header_dict(response.headers),
            )
    raise TooManyRedirects(url)


async def read_capped(
    response: aiohttp.ClientResponse, max_bytes: int, truncate_at: int | None = None
) -> bytes:
    """The body; too large raises ``ResponseTooLarge``, or with ``truncate_at`` is cut."""
    limit = truncate_at or max_bytes
    declared = response.content_length
    if truncate_at is None and declared is not None and declared > limit:
        raise ResponseTooLarge(declared)
    chunks: list[bytes] = []
    size = 0
    # Counted after decompression, so a small gzip bomb is caught as well.
    async for chunk in response.content.iter_chunked(READ_CHUNK_BYTES):
        size += len(chunk)
        if size > limit:
            if truncate_at is None:
                raise ResponseTooLarge(size)
            chunks.append(chunk[: len(chunk) - (size - limit)])
            break
        chunks.append(chunk)
    return b"".join(chunks)


def header_dict(headers: Mapping[str, str]) -> dict[str, str]:
    """Response headers as a plain dict with lower-case names (first value wins)."""
    found: dict[str, str] = {}
    for name, value in headers.items():
        found.setdefault(name.lower(), value)
    return found


def charset_of(response: aiohttp.ClientResponse) -> str | None:
    charset = response.charset
    if charset is None:
        return None
    try:
        "".encode(charset)
    except LookupError:
        return None  # a bogus charset label: fall back to UTF-8
    return charset


def redirected_away(requested: URL, final: URL) -> bool:
    """True when a redirect left the product page, typically for the home or a category page.

    Only the path counts: http -> https, another host name or a changed query are the same
    product. A trailing slash is not a different page.
    """
    if requested.path == final.path:
        return False
    if final.path in ("", "/"):
        return True
    return requested.path.rstrip("/") != final.path.rstrip("/")
