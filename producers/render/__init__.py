"""The render tier: pages whose price only appears after JavaScript runs, read in Chromium.

``browser`` (the ``Renderer``: Chromium launched or reached over CDP, a slot per render,
timeouts), ``routing`` (every request the browser makes, fetched through the URL guard or
refused), ``metrics``. The fetcher (``producers.fetch``) decides when to render: a site
adapter with ``render: true``, ``pricewatch extract URL --render``, or
``render_fallback`` when a static page shows no price.
"""

from producers.render.browser import Renderer, RenderFailed

__all__ = ["RenderFailed", "Renderer"]
