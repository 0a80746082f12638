"""Conditional GET: what a page's last 200 response said (its validators and extraction),
so the next request carries ``If-None-Match``/``If-Modified-Since`` and a 304 publishes the
remembered reading again, which costs the site and the detector almost nothing."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Remembered:
    """What a 200 response said last time, so that a 304 can say it again."""

    etag: str | None
    last_modified: str | None
    final_url: str
    fields: Mapping[str, object]  # the observation fields of the extraction

    def validators(self) -> dict[str, str]:
        headers: dict[str, str] = {}
        if self.etag:
            headers["If-None-Match"] = self.etag
        if self.last_modified:
            headers["If-Modified-Since"] = self.last_modified
        return headers

    def request_headers(self) -> dict[str, dict[str, str]]:
        """URL -> the validators to send to it: to the URL that answered 200, after any
        redirects (a fetch that now ends elsewhere asks unconditionally)."""
        return {self.final_url: self.validators()}


class ConditionalCache:
    """Validators and last extraction per requested URL, least recently used dropped first."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[str, Remembered] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, url: str) -> Remembered | None:
        entry = self._entries.get(url)
        if entry is not None:
            self._entries.move_to_end(url)
        return entry

    def put(self, url: str, entry: Remembered) -> None:
        if self.max_entries <= 0:
            return
        self._entries[url] = entry
        self._entries.move_to_end(url)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def forget(self, url: str) -> None:
        self._entries.pop(url, None)
