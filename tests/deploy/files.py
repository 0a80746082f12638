"""Readers for the deployment files (Dockerfile, docker-compose.yml, Terraform), shared by
the tests that check them against the code. No Docker engine or Terraform binary needed."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


# --- Dockerfile ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case: FROM, RUN, COPY, ...
    args: str  # continuation lines joined with a space, comments dropped
    line: int


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


@dataclass
class Dockerfile:
    global_args: dict[str, str]  # ARGs before the first FROM, with their defaults
    stages: list[Stage]

    def stage(self, name: str) -> Stage:
        matches = [s for s in self.stages if s.name == name]
        assert matches, f"no stage named {name!r}: {[s.name for s in self.stages]}"
        return matches[0]


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """(first line number, instruction text) with backslash continuations joined. Comment
    lines are dropped, also inside a continuation (as Docker does)."""
    out: list[tuple[int, str]] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].strip())
            continue
        pending.append(stripped)
        out.append((start, " ".join(p for p in pending if p)))
        pending = []
    assert not pending, "the Dockerfile ends inside a line continuation"
    return out


def parse_dockerfile(path: Path = ROOT / "Dockerfile") -> Dockerfile:
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for number, line in _logical_lines(path.read_text()):
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        args = args.strip()
        if keyword == "FROM":
            match = re.fullmatch(r"(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", args, re.I)
            assert match, f"line {number}: cannot read FROM {args!r}"
            stages.append(Stage(base=match[1], name=match[2]))
        elif not stages:
            assert keyword == "ARG", f"line {number}: {keyword} before the first FROM"
            name, _, default = args.partition("=")
            global_args[name] = default
        else:
            stages[-1].instructions.append(Instruction(keyword, args, number))
    return Dockerfile(global_args, stages)


def env_of(stage: Stage) -> dict[str, str]:
    """The stage's ENV key=value pairs (the only form this Dockerfile uses)."""
    env: dict[str, str] = {}
    for instruction in stage.all("ENV"):
        for pair in instruction.args.split():
            key, sep, value = pair.partition("=")
            assert sep, f"line {instruction.line}: use ENV key=value, not {pair!r}"
            env[key] = value.strip('"')
    return env


# --- pyproject ------------------------------------------------------------------------------


def pyproject() -> dict[str, Any]:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)


def top_level_packages() -> list[str]:
    """The package directories setuptools builds the wheel from (packages.find include)."""
    includes = pyproject()["tool"]["setuptools"]["packages"]["find"]["include"]
    return sorted({pattern.rstrip("*").rstrip(".") for pattern in includes})


# --- docker-compose.yml -----------------------------------------------------------------------

_INTERPOLATION = re.compile(r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}")


def interpolate(value: Any, variables: dict[str, str], used: dict[str, set[str]]) -> Any:
    """Compose's ``${VAR:-default}`` / ``${VAR}`` / ``$$`` substitution over a loaded file.

    ``used`` collects, per variable name, the defaults written in the file ("" for none)."""
    if isinstance(value, dict):
        return {k: interpolate(v, variables, used) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, variables, used) for v in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        if match[0] == "$$":
            return "$"
        name, default = match["name"], match["default"]
        used.setdefault(name, set()).add(default or "")
        return variables[name] if variables.get(name) else (default or "")

    return _INTERPOLATION.sub(substitute, value)


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=value lines of a compose .env file (no quoting used in ours)."""
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f"{path.name}: not KEY=value: {line!r}"
            values[key.strip()] = value
    return values


def load_compose(
    variables: dict[str, str] | None = None, path: Path = ROOT / "docker-compose.yml"
) -> tuple[dict[str, Any], dict[str, set[str]]]:
    """The compose file with YAML anchors merged and variables substituted, and the
    variables it uses with their defaults."""
    import yaml

    raw = yaml.safe_load(path.read_text())
    used: dict[str, set[str]] = {}
    return interpolate(raw, variables or {}, used), used


# --- Terraform ---------------------------------------------------------------------------------

TERRAFORM = ROOT / "infra" / "terraform"


@dataclass
class Terraform:
    """Every top-level block of infra/terraform/*.tf, merged over the files."""

    variables: dict[str, dict[str, Any]] = field(default_factory=dict)
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    locals: dict[str, Any] = field(default_factory=dict)
    resources: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    data: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    other: dict[str, list[Any]] = field(default_factory=dict)  # terraform, provider

    def of_type(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return {n: body for (t, n), body in self.resources.items() if t == resource_type}


def load_terraform(directory: Path = TERRAFORM) -> Terraform:
    """Parse with python-hcl2: string literals unquoted, blocks as lists of dicts,
    expressions as ``${...}`` strings."""
    import hcl2

    options = hcl2.SerializationOptions(
        with_comments=False, explicit_blocks=False, strip_string_quotes=True
    )
    tf = Terraform()
    for path in sorted(directory.glob("*.tf")):
        with open(path) as f:
            parsed = hcl2.load(f, serialization_options=options)
        for kind, blocks in parsed.items():
            for block in blocks:
                if kind == "variable":
                    _add_unique(tf.variables, block, path)
                elif kind == "output":
                    _add_unique(tf.outputs, block, path)
                elif kind == "locals":
                    _add_unique(tf.locals, block, path)
                elif kind in ("resource", "data"):
                    target = tf.resources if kind == "resource" else tf.data
                    for type_name, named in block.items():
                        for name, body in named.items():
                            assert (type_name, name) not in target, f"{path.name}: {name} twice"
                            target[(type_name, name)] = body
                else:
                    tf.other.setdefault(kind, []).append(block)
    return tf


def _add_unique(target: dict[str, Any], block: dict[str, Any], path: Path) -> None:
    for name, body in block.items():
        assert name not in target, f"{path.name}: {name} declared twice"
        target[name] = body


def strings_in(value: Any) -> Iterator[str]:
    """Every string anywhere in a parsed value (expressions included)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from strings_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings_in(item)
