"""Benchmarks run on demand (``python -m bench`` / ``make bench``); never part of the tests.

Every benchmark measures a candidate and a naive baseline in the same run, prints a table
with the ratio between them, and writes its figures to ``bench/results/<name>.json``.
"""
