"""The stream worker names the faust-streaming versions it was tested with, and warns (but
starts) on another one (streams.faust_compat)."""

from __future__ import annotations

import importlib.metadata
import logging

import pytest

from streams.faust_compat import TESTED_FAUST_VERSIONS, check_faust_version


def test_the_installed_faust_streaming_is_a_tested_version() -> None:
    assert importlib.metadata.version("faust-streaming") in TESTED_FAUST_VERSIONS
    assert check_faust_version()


def test_an_untested_version_is_a_warning_naming_the_tested_ones(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="streams.faust_compat"):
        assert not check_faust_version("0.99.0")
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert "0.99.0" in record.getMessage()
    assert all(tested in record.getMessage() for tested in TESTED_FAUST_VERSIONS)


def test_a_tested_version_says_nothing(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="streams.faust_compat"):
        assert check_faust_version(TESTED_FAUST_VERSIONS[0])
    assert caplog.records == []
