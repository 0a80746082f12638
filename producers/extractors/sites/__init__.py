"""Site adapters shipped with Pricewatch for the biggest shops, on by default.

A user's own adapter for a host (``Settings.site_adapters_file``) replaces the shipped one.
"""

from __future__ import annotations

from producers.extractors.base import Extractor


def site_extractor_for(url: str) -> Extractor | None:
    """The shipped adapter for ``url``'s shop, if there is one."""
    return None
