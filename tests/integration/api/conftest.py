"""The ``api`` fixture (the app on a real broker and database) for every API test module."""

from tests.integration.api.test_api import api  # noqa: F401 - a fixture, found by pytest
