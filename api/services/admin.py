"""The admin API's work: websites (their adapters, intervals, pausing), products and users.
Every call needs the admin token; without one configured the admin API is off (404)."""

from __future__ import annotations

import hmac
import time
from urllib.parse import urlsplit

from api import queries
from api.models import WebsiteCreate
from api.problems import ApiProblem
from api.services.base import Backend, too_many
from pricewatch.urlguard import UrlRefused, check_resolved_host


class Admin:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def require(self, authorization: str, client: str) -> None:
        """Pass only with ``Authorization: Bearer <the admin token>``. Wrong tokens are
        limited per client (``PRICEWATCH_RATE_LIMIT_ADMIN_FAILURES_PER_HOUR``); once a
        client has used its share every admin call of it is refused (429), the right token
        included, so a guess's answer never tells whether it was right."""
        token = self.backend.settings.admin_token
        expected = "" if token is None else token.get_secret_value().strip()
        if not expected:
            # Off, also when set to blanks: an empty token must never match an empty guess.
            raise ApiProblem(404, "Not Found")  # the admin API is off: nothing to find here
        failures = self.backend.limits.admin_failures
        wait = failures.wait(client, time.monotonic())
        if wait > 0:
            raise too_many("admin", wait)
        scheme, _, given = authorization.partition(" ")
        given = given.strip()
        if scheme.lower() != "bearer" or not given:
            raise ApiProblem(
                401, "Admin token required", headers={"WWW-Authenticate": 'Bearer realm="admin"'}
            )
        if not hmac.compare_digest(given.encode(), expected.encode()):
            failures.take(client, time.monotonic())
            raise ApiProblem(403, "Wrong admin token")

    async def websites(self) -> list[queries.Row]:
        return await self.backend.db(queries.websites)

    async def add_website(self, body: WebsiteCreate) -> queries.Row:
        try:
            # The same guard as for product URLs: a website's pages get fetched.
            await check_resolved_host(
                body.base_url, self.backend.settings.allowed_private_host_set, self.backend.resolver
            )
        except UrlRefused as exc:
            raise ApiProblem(
                422, "Invalid website", errors=[{"field": "base_url", "message": str(exc)}]
            ) from None
        # A website is its host name, port aside: the scrapers (pausing), the price sink
        # (products.website_id) and the subscribe check all match URLs by host name.
        host = urlsplit(body.base_url).hostname or ""
        row = await self.backend.db(
            queries.add_website,
            {
                "name": body.name,
                "host": host,
                "base_url": body.base_url,
                "adapter_config": body.adapter_config,
                "interval": body.default_check_interval_seconds,
                "paused": body.paused,
            },
        )
        if row is None:
            raise ApiProblem(409, f"A website with host {host} exists")
        return row

    async def edit_website(self, website_id: int, changes: queries.Row) -> queries.Row:
        row = await self.backend.db(queries.edit_website, website_id, changes)
        if row is None:
            raise ApiProblem(404, "No such website")
        return row

    async def products(self, limit: int, offset: int) -> list[queries.Row]:
        return await self.backend.db(queries.products, limit, offset)

    async def users(self, limit: int, offset: int) -> list[queries.Row]:
        return await self.backend.db(queries.users, limit, offset)
