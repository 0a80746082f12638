"""Pricewatch: a self-hostable streaming price tracker (shared core: settings, wire contract, CLI)."""

__version__ = "0.1.0"
