"""Pricewatch: a self-hostable streaming price tracker.

Shared core: settings, the wire contract, embedded services and the CLI.
"""

__version__ = "0.1.0"
