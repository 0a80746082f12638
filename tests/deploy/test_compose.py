"""docker-compose.yml (and .env.example, infra/prometheus/prometheus.yml) agree with the code:
commands exist in the CLI, variables are real settings, ports and Prometheus targets match
the settings, topics come from the code, images are pinned, start-up order is sound.

No Docker engine runs here: this reads the files; `docker compose up` itself is not run."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from graphlib import TopologicalSorter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from launcher import cli
from pricewatch.kafka import create_topics
from pricewatch.settings import Settings
from tests.conftest import REQUIRE_SERVICES
from tests.deploy.files import ROOT, load_compose, pyproject, read_env_file, strings_in

ENV_EXAMPLE = read_env_file(ROOT / ".env.example")
COMPOSE, USED_VARIABLES = load_compose()  # as `docker compose up` sees it without a .env
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
PROMETHEUS = yaml.safe_load((ROOT / "infra/prometheus/prometheus.yml").read_text())

PRICEWATCH_IMAGE = f"pricewatch:{pyproject()['project']['version']}"
PRICEWATCH = {name: s for name, s in SERVICES.items() if s.get("image") == PRICEWATCH_IMAGE}
# Set-up steps that run once and exit; everything else keeps running.
ONE_SHOT = {"kafka-topics", "db-migrate", "minio-init"}
LONG_RUNNING = {name: s for name, s in SERVICES.items() if name not in ONE_SHOT}
# Non-Pricewatch variables a Pricewatch container may set: boto3's credential chain.
OTHER_ALLOWED_ENV = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
VALID_CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}


def settings_of(service: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The Settings a container builds from its environment (validated like at start-up)."""
    for key in list(os.environ):
        if key.startswith("PRICEWATCH_"):
            monkeypatch.delenv(key)
    for key, value in service.get("environment", {}).items():
        if value is not None:  # no value: passed on from .env only when set there
            monkeypatch.setenv(key, str(value))
    return Settings(_env_file=None)  # type: ignore[call-arg]


def healthcheck_url(service: dict[str, Any]) -> str:
    test = " ".join(service["healthcheck"]["test"])
    match = re.search(r"https?://[^'\" ]+", test)
    assert match, f"no URL in healthcheck {test!r}"
    return match[0]


def published_container_ports(service: dict[str, Any]) -> set[int]:
    return {int(str(p).rsplit(":", 1)[1]) for p in service.get("ports", [])}


def prometheus_targets() -> Iterator[tuple[str, str, int]]:
    """(job, DNS name, port) for every DNS-discovered target."""
    for job in PROMETHEUS["scrape_configs"]:
        for sd in job.get("dns_sd_configs", []):
            assert sd["type"] == "A", "compose DNS answers A records, one per replica"
            for name in sd["names"]:
                yield job["job_name"], name, sd["port"]


# --- The Pricewatch services ------------------------------------------------------------------


def test_every_pricewatch_role_is_there() -> None:
    commands = {name: tuple(s["command"]) for name, s in PRICEWATCH.items()}
    assert commands == {
        "kafka-topics": ("topics", "create"),
        "db-migrate": ("db", "upgrade"),
        "worker": ("worker",),
        "scraper": ("scraper",),
        "postgres-sink": ("sink", "postgres"),
        "subscriptions-sink": ("sink", "subscriptions"),
        "events-sink": ("sink", "events"),
        "email-sink": ("sink", "email"),
        "channels-sink": ("sink", "channels"),
        "archive-sink": ("sink", "archive"),
        "api": ("api",),
        "demo-shop": ("demo-shop",),
    }
    # Every sink kind the CLI offers runs.
    sink_kinds = {s["command"][1] for s in PRICEWATCH.values() if s["command"][0] == "sink"}
    parser = cli.build_parser()
    choices = next(
        a.choices
        for sub in parser._subparsers._group_actions  # type: ignore[union-attr]
        for name, p in sub.choices.items()  # type: ignore[union-attr]
        if name == "sink"
        for a in p._actions
        if a.dest == "kinds"
    )
    assert sink_kinds == set(choices or ()) - {"all"}


@pytest.mark.parametrize("name", sorted(PRICEWATCH))
def test_command_is_a_cli_command(name: str) -> None:
    service = PRICEWATCH[name]
    assert "entrypoint" not in service, "the image's entrypoint is `pricewatch`"
    args = cli.build_parser().parse_args([str(a) for a in service["command"]])
    assert callable(args.func)


def test_topics_are_created_by_the_code() -> None:
    """The set-up step does not list topics: `pricewatch topics create` creates ALL_TOPICS
    (pricewatch/contract/topics.py) with PRICEWATCH_TOPIC_PARTITIONS partitions each."""
    args = cli.build_parser().parse_args(SERVICES["kafka-topics"]["command"])
    assert args.func is cli.cmd_topics_create
    from pricewatch.contract.topics import ALL_TOPICS

    assert create_topics.__defaults__ == (ALL_TOPICS,)


@pytest.mark.parametrize("name", sorted(PRICEWATCH))
def test_environment_is_real_settings(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    environment = PRICEWATCH[name]["environment"]
    fields = {f"PRICEWATCH_{field.upper()}" for field in Settings.model_fields}
    unknown = {k for k in environment if k.startswith("PRICEWATCH_")} - fields
    assert not unknown, f"not settings: {sorted(unknown)}"
    others = {k for k in environment if not k.startswith("PRICEWATCH_")}
    assert others <= OTHER_ALLOWED_ENV, others
    settings = settings_of(PRICEWATCH[name], monkeypatch)  # values validate too
    assert not settings.embedded_broker and settings.database_url
    assert settings.email_backend == "smtp" and settings.smtp_host in SERVICES


def test_every_service_agrees_on_the_wiring(monkeypatch: pytest.MonkeyPatch) -> None:
    """Topic names, partition counts (Faust tables must match their topics), groups and
    stores are the same for every process."""
    shared = (
        "kafka_bootstrap_servers",
        "topic_partitions",
        "topic_prefix",
        "app_id",
        "database_url",
        "data_dir",
        "s3_bucket",
    )
    seen = {
        name: tuple(getattr(settings_of(s, monkeypatch), f) for f in shared)
        for name, s in PRICEWATCH.items()
    }
    assert len(set(seen.values())) == 1, seen


def test_services_reach_the_infrastructure(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_of(SERVICES["archive-sink"], monkeypatch)
    kafka = SERVICES["kafka"]["environment"]
    assert f"PLAINTEXT://{settings.kafka_bootstrap_servers}" in kafka["KAFKA_ADVERTISED_LISTENERS"]
    assert kafka["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"

    db = urlsplit(settings.database())
    postgres = SERVICES["postgres"]["environment"]
    assert (db.hostname, db.port, db.path.lstrip("/")) == ("postgres", 5432, "pricewatch")
    assert (db.username, db.password) == (postgres["POSTGRES_USER"], postgres["POSTGRES_PASSWORD"])
    assert postgres["POSTGRES_DB"] == "pricewatch"

    assert (settings.smtp_host, settings.smtp_port) == ("mailpit", 1025)  # Mailpit's SMTP port

    s3 = urlsplit(settings.s3_endpoint_url or "")
    assert (s3.hostname, s3.port) == ("minio", 9000)
    environment = SERVICES["archive-sink"]["environment"]
    minio = SERVICES["minio"]["environment"]
    assert environment["AWS_ACCESS_KEY_ID"] == minio["MINIO_ROOT_USER"]
    assert environment["AWS_SECRET_ACCESS_KEY"] == minio["MINIO_ROOT_PASSWORD"]
    init = SERVICES["minio-init"]
    assert init["environment"]["ARCHIVE_BUCKET"] == settings.s3_bucket
    assert "mc mb --ignore-existing" in init["command"][0]


# --- Ports, metrics and Prometheus ------------------------------------------------------------


def test_api_and_demo_shop_listen_where_they_are_published(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    api = settings_of(SERVICES["api"], monkeypatch)
    # 127.0.0.1 inside a container is unreachable through a published port.
    assert api.api_host == "0.0.0.0"
    assert published_container_ports(SERVICES["api"]) == {api.api_port}
    assert urlsplit(healthcheck_url(SERVICES["api"])).port == api.api_port
    assert urlsplit(api.api_base_url).port == api.api_port  # links in emails

    shop = settings_of(SERVICES["demo-shop"], monkeypatch)
    assert shop.api_host == "0.0.0.0"
    assert published_container_ports(SERVICES["demo-shop"]) == {shop.demo_shop_port}
    assert urlsplit(healthcheck_url(SERVICES["demo-shop"])).port == shop.demo_shop_port
    # Scrapers may fetch the shop by its service name although it is a private address.
    scraper = settings_of(SERVICES["scraper"], monkeypatch)
    assert f"demo-shop:{shop.demo_shop_port}" in scraper.allowed_private_host_set


def metrics_port_of(name: str, monkeypatch: pytest.MonkeyPatch) -> int | None:
    """Where the service's /metrics answers (None: it serves none)."""
    settings = settings_of(SERVICES[name], monkeypatch)
    return settings.metrics_port or None


def test_prometheus_scrapes_every_pricewatch_process(monkeypatch: pytest.MonkeyPatch) -> None:
    targets = {name: port for _, name, port in prometheus_targets()}
    assert len(targets) == len(list(prometheus_targets())), "a service scraped twice"
    running = set(PRICEWATCH) - ONE_SHOT - {"demo-shop"}  # the shop is not Pricewatch
    assert set(targets) == running
    for name in running:
        port = metrics_port_of(name, monkeypatch)
        assert port and targets[name] == port, (name, port, targets[name])
        settings = settings_of(SERVICES[name], monkeypatch)
        assert settings.metrics_host == "0.0.0.0", f"{name}: /metrics unreachable"
        # Metrics stay inside the compose network: no host port leads to them.
        assert port not in published_container_ports(SERVICES[name]), name
        if name == "api":
            assert port != settings.api_port, "the API's public port serves no metrics"
        else:
            # The health check asks the same endpoint Prometheus scrapes.
            assert urlsplit(healthcheck_url(SERVICES[name])).port == port
    assert {j["job_name"] for j in PROMETHEUS["scrape_configs"]} >= {
        "pricewatch-api",
        "pricewatch-worker",
        "pricewatch-scraper",
    }


def test_prometheus_config_is_the_mounted_one() -> None:
    volumes = SERVICES["prometheus"]["volumes"]
    assert "./infra/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in volumes


def test_grafana_mounts_provisioning_and_dashboards() -> None:
    volumes = SERVICES["grafana"]["volumes"]
    assert "./infra/grafana/provisioning:/etc/grafana/provisioning:ro" in volumes
    assert "./infra/grafana/dashboards:/var/lib/grafana/dashboards:ro" in volumes


def test_grafana_datasources_point_at_compose_services() -> None:
    """The provisioned datasources (written with the dashboards) name services of this file
    with their credentials, and every $VARIABLE they use is in Grafana's environment."""
    files = sorted((ROOT / "infra/grafana/provisioning/datasources").glob("*.y*ml"))
    if not files:
        pytest.skip("no Grafana datasources provisioned yet (infra/grafana/provisioning)")
    grafana_env = SERVICES["grafana"]["environment"]
    postgres_env = SERVICES["postgres"]["environment"]
    for path in files:
        provisioned = yaml.safe_load(path.read_text())  # values only, not comments
        for text in strings_in(provisioned):
            for name in re.findall(r"\$\{?([A-Z][A-Z0-9_]*)", text):
                assert name in grafana_env, f"{path.name} uses ${name}, unset in grafana"
        for source in provisioned.get("datasources", []):
            url = source.get("url", "")
            host = urlsplit(url if "//" in url else f"//{url}").hostname
            assert host in SERVICES, f"{path.name}: {source.get('name')} -> {url}"
            if host == "postgres":
                assert source["user"] == postgres_env["POSTGRES_USER"]
                assert source["jsonData"]["database"] == postgres_env["POSTGRES_DB"]
                password = source["secureJsonData"]["password"].lstrip("$").strip("{}")
                assert grafana_env[password] == postgres_env["POSTGRES_PASSWORD"]
            if host == "prometheus":
                assert urlsplit(url).port == 9090


# --- Images, health checks, start-up order ----------------------------------------------------


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_image_is_pinned(name: str) -> None:
    image = SERVICES[name]["image"]
    repository, _, tag = image.rpartition(":")
    assert repository and tag and tag != "latest", image
    assert re.search(r"\d+\.\d+|RELEASE\.\d{4}", tag), f"{image}: not an exact version"


@pytest.mark.parametrize("name", sorted(LONG_RUNNING))
def test_long_running_service_has_a_healthcheck(name: str) -> None:
    check = SERVICES[name].get("healthcheck", {})
    assert check.get("test") and check["test"][0] in ("CMD", "CMD-SHELL"), check


def test_depends_on_conditions_are_valid_and_acyclic() -> None:
    graph: dict[str, set[str]] = {}
    for name, service in SERVICES.items():
        depends = service.get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: use depends_on with conditions"
        graph[name] = set(depends)
        for target, spec in depends.items():
            assert target in SERVICES, f"{name} depends on unknown {target}"
            condition = spec["condition"]
            assert condition in VALID_CONDITIONS, (name, target, condition)
            if condition == "service_healthy":
                assert "healthcheck" in SERVICES[target], f"{target} has no healthcheck"
            if condition == "service_completed_successfully":
                assert target in ONE_SHOT, f"{target} never completes"
    for name in ONE_SHOT:
        assert "restart" not in SERVICES[name], f"{name} must run once and exit"
    list(TopologicalSorter(graph).static_order())  # raises on a cycle


@pytest.mark.parametrize("name", sorted(set(PRICEWATCH) - ONE_SHOT - {"demo-shop"}))
def test_pricewatch_starts_after_topics_and_schema(name: str) -> None:
    depends = SERVICES[name]["depends_on"]
    for step in ("kafka-topics", "db-migrate"):
        assert depends[step]["condition"] == "service_completed_successfully"


def test_set_up_steps_wait_for_their_service() -> None:
    assert SERVICES["kafka-topics"]["depends_on"] == {"kafka": {"condition": "service_healthy"}}
    assert SERVICES["db-migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}


def test_api_starts_after_the_schema_and_postgresql() -> None:
    """The API reads and writes users and subscriptions in PostgreSQL from its first request."""
    depends = SERVICES["api"]["depends_on"]
    assert depends["db-migrate"] == {"condition": "service_completed_successfully"}
    assert depends["postgres"] == {"condition": "service_healthy"}


# --- Secrets: the link-signing key and the admin token ----------------------------------------

# The processes that sign or check the links in emails, and seal or open channel URLs: each
# refuses to start without the key.
LINK_SIGNERS = {"api", "email-sink", "channels-sink"}


@pytest.mark.parametrize(
    "env",
    [None, ENV_EXAMPLE, {"PRICEWATCH_SECRET_KEY": "a-key-of-my-own-0123456789abcdef"}],
    ids=["no-env", "env-example", "own-key"],
)
def test_api_and_email_sink_share_one_valid_secret_key(
    env: dict[str, str] | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = load_compose(env)[0]["services"]
    keys = {
        name: settings_of(services[name], monkeypatch).secret_key_bytes()  # what start checks
        for name in LINK_SIGNERS
    }
    assert len(set(keys.values())) == 1, "links signed by one would answer 403 in the other"
    if env and "PRICEWATCH_SECRET_KEY" in env:
        assert set(keys.values()) == {env["PRICEWATCH_SECRET_KEY"].encode()}, "ignores .env"
    # Nothing else holds it: a process that only needs Kafka cannot forge links.
    holders = {
        name
        for name, service in services.items()
        if "PRICEWATCH_SECRET_KEY" in service.get("environment", {})
    }
    assert holders == LINK_SIGNERS


def test_the_laptop_secret_key_says_it_is_insecure() -> None:
    """The default in the file (and .env.example) is public: its value and both files say so."""
    [default] = USED_VARIABLES["PRICEWATCH_SECRET_KEY"]
    assert "insecure" in default and len(default.encode()) >= 16
    compose_text = (ROOT / "docker-compose.yml").read_text()
    example_text = (ROOT / ".env.example").read_text()
    assert "openssl rand" in compose_text and "openssl rand" in example_text


@pytest.mark.parametrize(
    ("env", "starts"),
    [
        (None, True),  # the laptop default: a public key, declared a demo
        (ENV_EXAMPLE, True),
        ({"PRICEWATCH_SECRET_KEY": "a-key-of-my-own-0123456789abcdef"}, True),
        (
            {
                "PRICEWATCH_SECRET_KEY": "a-key-of-my-own-0123456789abcdef",
                "PRICEWATCH_DEMO": "false",
            },
            True,
        ),
        ({"PRICEWATCH_DEMO": "false"}, False),  # the public key outside a demo
    ],
    ids=["no-env", "env-example", "own-key", "own-key-not-demo", "public-key-not-demo"],
)
def test_the_api_starts_with_the_public_key_only_as_a_demo(
    env: dict[str, str] | None, starts: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_of(load_compose(env)[0]["services"]["api"], monkeypatch)
    if starts:
        settings.refuse_public_secret_key()  # what run_api checks first
    else:
        with pytest.raises(RuntimeError, match="public default"):
            settings.refuse_public_secret_key()


@pytest.mark.parametrize(
    ("env", "trusted"),
    [(None, []), ({"PRICEWATCH_TRUSTED_PROXIES": "172.16.0.0/12"}, ["172.16.0.0/12"])],
    ids=["direct", "own-proxy"],
)
def test_the_api_trusts_x_forwarded_for_only_from_proxies_in_env(
    env: dict[str, str] | None, trusted: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    services = load_compose(env)[0]["services"]
    settings = settings_of(services["api"], monkeypatch)
    assert [str(network) for network in settings.trusted_proxies] == trusted
    others = {
        name
        for name, service in services.items()
        if "PRICEWATCH_TRUSTED_PROXIES" in service.get("environment", {})
    }
    assert others == {"api"}


def test_admin_api_is_off_unless_a_token_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the API may get the admin token, passed on from .env without a default (an empty
    or a default token would be worse than none), so without one the admin API answers 404."""
    for name, service in SERVICES.items():
        environment = service.get("environment", {})
        if name == "api":
            assert "PRICEWATCH_ADMIN_TOKEN" in environment
            assert environment["PRICEWATCH_ADMIN_TOKEN"] is None  # `KEY:` with no value
        else:
            assert "PRICEWATCH_ADMIN_TOKEN" not in environment, name
    assert settings_of(SERVICES["api"], monkeypatch).admin_token is None
    assert "PRICEWATCH_ADMIN_TOKEN" not in USED_VARIABLES  # not interpolated: no default
    # .env.example shows it, commented out (a line with an empty value would set it empty).
    assert "PRICEWATCH_ADMIN_TOKEN" not in ENV_EXAMPLE
    assert "\n# PRICEWATCH_ADMIN_TOKEN=\n" in (ROOT / ".env.example").read_text()


# --- .env.example ------------------------------------------------------------------------------


def test_env_example_names_real_settings_and_every_variable_compose_reads() -> None:
    fields = {f"PRICEWATCH_{field.upper()}" for field in Settings.model_fields}
    unknown = {k for k in ENV_EXAMPLE if k.startswith("PRICEWATCH_")} - fields
    assert not unknown, f".env.example sets no such setting: {sorted(unknown)}"
    # Every variable compose substitutes is documented, and every documented one is used
    # (a line in .env.example that compose ignores would silently do nothing).
    assert set(USED_VARIABLES) == set(ENV_EXAMPLE)


def test_env_example_shows_the_defaults() -> None:
    """Copying .env.example to .env changes nothing: it shows what runs without it."""
    for name, defaults in USED_VARIABLES.items():
        assert defaults == {ENV_EXAMPLE[name]}, (name, defaults, ENV_EXAMPLE[name])
    with_env, _ = load_compose(ENV_EXAMPLE)
    assert with_env == COMPOSE


def test_env_example_values_are_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("PRICEWATCH_"):
            monkeypatch.delenv(key)
    for key, value in ENV_EXAMPLE.items():
        if key.startswith("PRICEWATCH_"):
            monkeypatch.setenv(key, value)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.topic_partitions >= 2  # room for --scale worker=2


def test_gitignore_keeps_env_out_of_git() -> None:
    assert ".env" in (ROOT / ".gitignore").read_text().split()
    assert Path(ROOT / ".env.example").exists()


def compose_cli() -> list[str] | None:
    """A Compose implementation to ask, if one is installed: Compose v2 as a docker plugin,
    or docker-compose (v1.29 from Debian, which validates against the Compose spec too)."""
    docker = shutil.which("docker")
    if docker:
        probe = subprocess.run([docker, "compose", "version"], capture_output=True, timeout=30)
        if probe.returncode == 0:
            return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


def test_compose_itself_accepts_the_file(tmp_path: Path) -> None:
    """Schema validation and interpolation by Compose (no engine needed for `config`), both
    without a .env and with .env.example as the .env."""
    command = compose_cli()
    if command is None:
        message = "no docker compose / docker-compose installed: run `make compose-deps`"
        if REQUIRE_SERVICES:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    for env_file in (None, ROOT / ".env.example"):
        project = tmp_path / ("with-env" if env_file else "without-env")
        project.mkdir()
        shutil.copy(ROOT / "docker-compose.yml", project)
        if env_file:
            shutil.copy(env_file, project / ".env")
        environment = {k: v for k, v in os.environ.items() if k not in ENV_EXAMPLE}
        checked = subprocess.run(
            [*command, "config", "-q"],
            cwd=project,
            env=environment,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr
        services = subprocess.run(
            [*command, "config", "--services"],
            cwd=project,
            env=environment,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert set(services.stdout.split()) == set(SERVICES)
