"""``pricewatch demo`` (``run``): the whole pipeline on embedded defaults, and the demo shop
(``shop``), whose prices and stock change over a JSON admin API: a realistic, controllable
scrape target for the demo and the tests.
"""
