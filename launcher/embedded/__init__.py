"""Embedded stand-ins for the demo and tests: the tansu broker and PostgreSQL from wheels."""
