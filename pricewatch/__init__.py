"""Pricewatch: a self-hostable streaming price tracker.

The shared core every role uses (scrapers, stream workers, sinks, the API): the settings,
the wire contract, ids, tokens and signed links, Kafka helpers, metrics, dead letters, the
URL guard and the database. It imports no role; the launcher (``launcher``) starts them.
"""

__version__ = "0.1.0"
