"""The HTTP API and the pages for people (aiohttp): a process of its own, a peer of the
stream workers, scrapers and sinks that meets them through the topics and the database.

``app`` serves the route table (``routes``: ``json_routes`` and ``pages``), which
``openapi`` documents; ``services`` does the work, ``queries`` is its SQL."""
