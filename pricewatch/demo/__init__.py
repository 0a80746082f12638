"""A small demo shop whose prices and stock can be changed over a JSON admin API.

Used by ``pricewatch demo`` and the tests as a realistic, controllable scrape target.
"""
