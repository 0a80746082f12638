"""Fetching product pages: ``client`` (the ``PageFetcher``), one concern per module beside
it: ``redirects`` (a guarded GET and its size cap), ``retries`` and ``conditional``
(conditional GETs). Politeness per host is ``producers.politeness``, robots.txt
``producers.robots``."""

from producers.fetch.client import FetchResult, PageFetcher, website_of

__all__ = ["FetchResult", "PageFetcher", "website_of"]
