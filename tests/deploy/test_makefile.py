"""`make test` on a person's own machine changes nothing on the system: it says what is
missing and which tests skip; system packages are installed by `make test-deps` only, which
CI (.ci/run) calls, and REQUIRE_SERVICES=1 still turns the skips into failures."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.deploy.files import ROOT

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="no make")


def make(*args: str) -> str:
    result = subprocess.run(
        ["make", "--no-print-directory", "-C", str(ROOT), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout


def test_make_test_installs_nothing_on_the_system() -> None:
    # -n: the commands make test would run, without running them.
    planned = make("-n", "test")
    for installer in ("apt-get", "sudo", "brew", "pip install --user"):
        assert installer not in planned, installer


def test_make_test_says_what_is_missing_and_which_tests_skip() -> None:
    said = make("-s", "test-deps-check", "HAVE_BROWSER=false", "HAVE_COMPOSE=false")
    assert "tests/system/test_browser_journey.py skips" in said
    assert "tests/deploy/test_compose.py::test_compose_itself_accepts_the_file skips" in said
    assert said.count("make test-deps") == 2
    assert make("-s", "test-deps-check", "HAVE_BROWSER=true", "HAVE_COMPOSE=true") == ""


def test_ci_installs_the_system_packages_then_requires_every_service() -> None:
    ci = (ROOT / ".ci/run").read_text()
    commands = [line.strip() for line in ci.splitlines() if not line.lstrip().startswith("#")]
    assert commands.index("make test-deps") < commands.index("export REQUIRE_SERVICES=1")
    assert commands.index("export REQUIRE_SERVICES=1") < commands.index("exec make test")
    planned = make("-n", "test-deps", "HAVE_BROWSER=false", "HAVE_COMPOSE=false")
    assert "apt-get install" in planned and "chromium-driver" in planned
    assert "docker-compose" in planned
