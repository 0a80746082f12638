"""infra/terraform parses and is complete and consistent, checked without Terraform.

No Terraform or OpenTofu binary installs from the registries these machines reach, so
`terraform fmt -check` / `validate` are not run here (README.md says what to run where they
can be). Instead the files are parsed with python-hcl2 and checked: the AWS resources the
deployment needs are declared; every variable has a type and a description, every output
a description; every reference names a declared variable, local, resource or data source;
the ECS services run real CLI commands with real settings; IAM grants stay scoped.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml

from launcher import cli
from pricewatch.settings import Settings
from tests.deploy.files import ROOT, TERRAFORM, load_terraform, strings_in

TF = load_terraform()
SETTINGS_FIELDS = {f"PRICEWATCH_{name.upper()}" for name in Settings.model_fields}
PRICEWATCH_ROLES = {
    "api",
    "worker",
    "scraper",
    "postgres-sink",
    "subscriptions-sink",
    "events-sink",
    "email-sink",
    "channels-sink",
    "archive-sink",
}

_VAR_OR_LOCAL = re.compile(r"\b(var|local)\.([A-Za-z_][A-Za-z0-9_]*)")
_DATA = re.compile(r"\bdata\.([a-z][a-z0-9_]*)\.([A-Za-z_][A-Za-z0-9_-]*)")
_RESOURCE = re.compile(r"(?<![\w.])((?:aws|random)_[a-z0-9_]+)\.([A-Za-z_][A-Za-z0-9_-]*)")


def all_blocks() -> list[tuple[str, Any]]:
    blocks: list[tuple[str, Any]] = []
    blocks += [(f"variable {n}", b) for n, b in TF.variables.items()]
    blocks += [(f"output {n}", b) for n, b in TF.outputs.items()]
    blocks += [(f"local {n}", b) for n, b in TF.locals.items()]
    blocks += [(f"{t}.{n}", b) for (t, n), b in TF.resources.items()]
    blocks += [(f"data.{t}.{n}", b) for (t, n), b in TF.data.items()]
    blocks += [(kind, b) for kind, bs in TF.other.items() for b in bs]
    return blocks


def test_the_deployment_declares_the_aws_pieces() -> None:
    required = {
        # network
        "aws_vpc",
        "aws_subnet",
        "aws_nat_gateway",
        "aws_security_group",
        # Kafka, PostgreSQL, archive, email
        "aws_msk_cluster",
        "aws_db_instance",
        "aws_s3_bucket",
        "aws_s3_bucket_lifecycle_configuration",
        "aws_s3_bucket_public_access_block",
        "aws_s3_bucket_server_side_encryption_configuration",
        "aws_sesv2_email_identity",
        "aws_sesv2_configuration_set",
        # containers
        "aws_ecr_repository",
        "aws_ecs_cluster",
        "aws_ecs_task_definition",
        "aws_ecs_service",
        "aws_appautoscaling_target",
        "aws_appautoscaling_policy",
        "aws_lb",
        # secrets, IAM, observability
        "aws_secretsmanager_secret",
        "aws_iam_role",
        "aws_iam_role_policy",
        "aws_prometheus_workspace",
        "aws_grafana_workspace",
    }
    declared = {t for t, _ in TF.resources}
    assert required <= declared, sorted(required - declared)
    [db] = TF.of_type("aws_db_instance").values()
    assert db["engine"] == "postgres" and db["storage_encrypted"] is True
    assert db["publicly_accessible"] is False


def test_archive_lifecycle_moves_and_expires_observations() -> None:
    [lifecycle] = TF.of_type("aws_s3_bucket_lifecycle_configuration").values()
    rules = {rule["id"]: rule for rule in lifecycle["rule"]}
    aging = rules["age-observations"]
    assert aging["filter"][0]["prefix"] == "${var.archive_prefix}/"
    assert [t["storage_class"] for t in aging["transition"]] == ["STANDARD_IA", "GLACIER_IR"]
    assert "expiration" in aging["dynamic"][0]
    assert "abort_incomplete_multipart_upload" in rules["abort-incomplete-uploads"]
    assert TF.variables["archive_prefix"]["default"] == "observations"  # the settings' default
    assert Settings().s3_prefix == "observations"


@pytest.mark.parametrize("name", sorted(TF.variables))
def test_variable_has_a_type_and_a_description(name: str) -> None:
    variable = TF.variables[name]
    assert variable.get("type"), f"variable {name} has no type"
    assert len(variable.get("description", "")) > 15, f"variable {name}: describe it"


@pytest.mark.parametrize("name", sorted(TF.outputs))
def test_output_has_a_description(name: str) -> None:
    assert len(TF.outputs[name].get("description", "")) > 15, f"output {name}: describe it"


def test_every_reference_resolves_and_every_variable_is_used() -> None:
    used_variables: set[str] = set()
    unresolved: list[str] = []
    for where, body in all_blocks():
        for text in strings_in(body):
            for kind, name in _VAR_OR_LOCAL.findall(text):
                declared = TF.variables if kind == "var" else TF.locals
                if kind == "var":
                    used_variables.add(name)
                if name not in declared:
                    unresolved.append(f"{where}: {kind}.{name}")
            for type_name, name in _DATA.findall(text):
                if (type_name, name) not in TF.data:
                    unresolved.append(f"{where}: data.{type_name}.{name}")
            for type_name, name in _RESOURCE.findall(_DATA.sub("", text)):
                if (type_name, name) not in TF.resources:
                    unresolved.append(f"{where}: {type_name}.{name}")
    assert not unresolved, unresolved
    assert used_variables == set(TF.variables), set(TF.variables) - used_variables


def test_the_reference_check_catches_a_typo() -> None:
    """The regular expressions above do find references in hcl2's output."""
    text = json.dumps(TF.resources[("aws_ecs_service", "service")])
    assert ("aws_ecs_cluster", "main") in _RESOURCE.findall(text)
    assert ("var", "service_sizes") in _VAR_OR_LOCAL.findall(text)
    assert ("aws_ecs_clustr", "main") not in TF.resources


# --- The ECS services against the code --------------------------------------------------------


def test_services_are_the_pricewatch_roles_and_run_real_commands() -> None:
    services: dict[str, list[str]] = TF.locals["services"]
    assert set(services) == PRICEWATCH_ROLES
    assert set(TF.variables["service_sizes"]["default"]) == PRICEWATCH_ROLES
    setup: dict[str, list[str]] = TF.locals["setup_tasks"]
    assert setup == {"kafka-topics": ["topics", "create"], "db-migrate": ["db", "upgrade"]}
    parser = cli.build_parser()
    for command in [*services.values(), *setup.values()]:
        assert callable(parser.parse_args(command).func)
    # Every service scales, and each has its own task role.
    for resource in ("aws_ecs_service", "aws_appautoscaling_target", "aws_appautoscaling_policy"):
        assert TF.resources[(resource, "service" if "policy" not in resource else "cpu")][
            "for_each"
        ] == ("${local.services}")
    assert TF.resources[("aws_iam_role", "task")]["for_each"] == "${local.services}"


def test_every_pricewatch_variable_is_a_setting() -> None:
    named = {
        match
        for _, body in all_blocks()
        for text in strings_in(body)
        for match in re.findall(r"PRICEWATCH_[A-Z0-9_]+", text)
    }
    assert named, "no PRICEWATCH_* settings found"
    assert named <= SETTINGS_FIELDS, sorted(named - SETTINGS_FIELDS)
    environment = TF.locals["common_environment"]
    assert environment["PRICEWATCH_API_HOST"] == "0.0.0.0"  # reachable in a task
    assert environment["PRICEWATCH_METRICS_HOST"] == "0.0.0.0"
    assert environment["PRICEWATCH_EMAIL_BACKEND"] == "ses"
    # Passwords and keys never sit in plain task configuration: only as secrets.
    assert not set(environment) & set(TF.locals["task_secrets"])


def test_the_api_believes_x_forwarded_for_only_from_the_load_balancer() -> None:
    """The rate limits key on the client the load balancer forwards for: the API trusts
    the public subnets (where the ALB lives, nothing else does), and only the API does."""
    assert TF.resources[("aws_lb", "api")]["subnets"] == "${aws_subnet.public[*].id}"
    assert TF.locals["api_environment"] == {
        "PRICEWATCH_TRUSTED_PROXIES": '${join(",", aws_subnet.public[*].cidr_block)}'
    }
    definitions = TF.resources[("aws_ecs_task_definition", "service")]["container_definitions"]
    assert (
        '{for key, value in local.api_environment : key => value if each.key == "api"}'
        in definitions
    )
    assert "PRICEWATCH_TRUSTED_PROXIES" not in TF.locals["common_environment"]


# --- Secrets: which task gets which ---------------------------------------------------------

# Every task: the services and the one-off set-up tasks.
ALL_TASKS = PRICEWATCH_ROLES | {"kafka-topics", "db-migrate"}
ROLE_EXPRESSIONS = {
    "${concat(keys(local.services), keys(local.setup_tasks))}": lambda admin: ALL_TASKS,
    '${var.admin_api_enabled ? ["api"] : []}': lambda admin: {"api"} if admin else set(),
}


def secrets_by_task(admin_api_enabled: bool) -> dict[str, dict[str, str]]:
    """task -> {environment variable: secret ARN expression}, what ECS injects at start.

    Evaluates ``local.task_secrets`` for the role lists it uses (an expression it does not
    know fails the test: extend ROLE_EXPRESSIONS knowingly), and checks that the task
    definitions pass exactly ``local.secrets_of[each.key]``, the filter over it."""
    secrets_of = TF.locals["secrets_of"]
    assert secrets_of == (
        "${{for role in concat(keys(local.services), keys(local.setup_tasks)) : role => "
        "[for name, secret in local.task_secrets : {name = name, valueFrom = secret.arn} "
        "if contains(secret.roles, role)]}}"
    ), secrets_of
    for name in ("service", "setup"):
        definitions = TF.resources[("aws_ecs_task_definition", name)]["container_definitions"]
        assert definitions.count("secrets = local.secrets_of[each.key]") == 1, name
        assert len(re.findall(r"\bsecrets\s*=", definitions)) == 1, f"{name}: secrets twice"
        assert "valueFrom" not in definitions, name
    assert set(TF.locals["services"]) | set(TF.locals["setup_tasks"]) == ALL_TASKS
    by_task: dict[str, dict[str, str]] = {task: {} for task in ALL_TASKS}
    for variable, secret in TF.locals["task_secrets"].items():
        roles = secret["roles"]
        tasks = (
            set(roles) if isinstance(roles, list) else ROLE_EXPRESSIONS[roles](admin_api_enabled)
        )
        assert tasks <= ALL_TASKS, tasks - ALL_TASKS
        for task in tasks:
            by_task[task][variable] = secret["arn"]
    return by_task


@pytest.mark.parametrize("admin_api_enabled", [False, True])
def test_each_task_gets_exactly_the_secrets_it_needs(admin_api_enabled: bool) -> None:
    """The database URL reaches every task; the link-signing key the API and the email sink,
    the same secret for both (they refuse to start without it; links signed by one must
    verify in the other); the admin token only the API, only when enabled."""
    by_task = secrets_by_task(admin_api_enabled)
    database = "${aws_secretsmanager_secret.database_url.arn}"
    key = "${aws_secretsmanager_secret.secret_key.arn}"
    admin = "${one(aws_secretsmanager_secret.admin_token[*].arn)}"
    for task, secrets in by_task.items():
        expected = {"PRICEWATCH_DATABASE_URL": database}
        if task in {"api", "email-sink", "channels-sink"}:
            expected["PRICEWATCH_SECRET_KEY"] = key
        if task == "api" and admin_api_enabled:
            expected["PRICEWATCH_ADMIN_TOKEN"] = admin
        assert secrets == expected, task
    assert set(TF.locals["task_secrets"]) <= SETTINGS_FIELDS


def test_secrets_are_generated_strong_and_stored() -> None:
    key = TF.resources[("random_password", "secret_key")]
    assert key["length"] >= 32 and "count" not in key  # always: the API needs it to start
    version = TF.resources[("aws_secretsmanager_secret_version", "secret_key")]
    assert version["secret_id"] == "${aws_secretsmanager_secret.secret_key.id}"
    assert version["secret_string"] == "${random_password.secret_key.result}"

    enabled = "${var.admin_api_enabled ? 1 : 0}"
    token = TF.resources[("random_password", "admin_token")]
    assert token["length"] >= 32 and token["count"] == enabled
    assert TF.resources[("aws_secretsmanager_secret", "admin_token")]["count"] == enabled
    version = TF.resources[("aws_secretsmanager_secret_version", "admin_token")]
    assert version["count"] == enabled
    assert version["secret_string"] == "${random_password.admin_token[0].result}"
    assert TF.variables["admin_api_enabled"]["default"] is False  # off unless asked for
    # The operator finds them (README: reading the admin token).
    assert TF.outputs["secret_key_secret_arn"]["value"] == (
        "${aws_secretsmanager_secret.secret_key.arn}"
    )
    assert TF.outputs["admin_token_secret_arn"]["value"] == (
        "${one(aws_secretsmanager_secret.admin_token[*].arn)}"
    )


def test_metrics_are_not_behind_the_load_balancer() -> None:
    """Issue 19: every task serves /metrics on metrics_port, which only the tasks' own
    security group (the Prometheus agent) reaches; the load balancer forwards the API port."""
    assert TF.locals["metrics_ports"] == (
        "${{for name in keys(local.services) : name => local.metrics_port}}"
    )
    assert TF.locals["metrics_port"] != TF.locals["api_port"]
    assert TF.resources[("aws_lb_target_group", "api")]["port"] == "${local.api_port}"
    ingress = {
        name: body
        for (kind, name), body in TF.resources.items()
        if kind == "aws_vpc_security_group_ingress_rule"
    }
    metrics_rules = [
        body for body in ingress.values() if body["from_port"] == "${local.metrics_port}"
    ]
    assert metrics_rules and all(
        body["referenced_security_group_id"] == "${aws_security_group.tasks.id}"
        for body in metrics_rules
    )
    from_alb = [
        body
        for body in ingress.values()
        if body.get("referenced_security_group_id") == "${aws_security_group.alb.id}"
    ]
    assert [body["from_port"] for body in from_alb] == ["${local.api_port}"]
    assert TF.locals["prometheus_jobs"]["pricewatch-api"]["port"] == "${local.metrics_port}"


def test_metrics_are_scraped_like_in_docker_compose() -> None:
    """The Prometheus agent's jobs on AWS are those of infra/prometheus/prometheus.yml."""
    ports = {"${local.api_port}": TF.locals["api_port"], "${local.metrics_port}": 9100}
    assert TF.locals["metrics_port"] == 9100
    on_aws = {
        (job, name, ports[spec["port"]])
        for job, spec in TF.locals["prometheus_jobs"].items()
        for name in spec["names"]
    }
    compose = yaml.safe_load((ROOT / "infra/prometheus/prometheus.yml").read_text())
    locally = {
        (job["job_name"], name, sd["port"])
        for job in compose["scrape_configs"]
        for sd in job.get("dns_sd_configs", [])
        for name in sd["names"]
    }
    assert on_aws == locally
    assert {name for _, name, _ in on_aws} == PRICEWATCH_ROLES


# --- Least privilege ---------------------------------------------------------------------------

# Actions AWS cannot scope to a resource; nothing else may use "*".
UNSCOPED_ALLOWED = {"ecr:GetAuthorizationToken", "aps:ListWorkspaces", "aps:DescribeWorkspace"}


def test_iam_statements_are_scoped() -> None:
    for (type_name, name), body in TF.data.items():
        if type_name != "aws_iam_policy_document":
            continue
        for statement in body["statement"]:
            actions = statement.get("actions", [])
            effect = statement.get("effect", "Allow")
            if effect == "Deny":
                continue
            assert not any(a == "*" or a.endswith(":*") for a in actions), (name, actions)
            if statement.get("resources") == ["*"]:
                assert set(actions) <= UNSCOPED_ALLOWED, (name, actions)


def test_only_the_archive_and_email_sinks_get_aws_permissions() -> None:
    task_role_policies = {
        body["role"]
        for body in TF.of_type("aws_iam_role_policy").values()
        if "aws_iam_role.task[" in body["role"]
    }
    assert task_role_policies == {
        '${aws_iam_role.task["archive-sink"].id}',
        '${aws_iam_role.task["email-sink"].id}',
    }
    archive = TF.data[("aws_iam_policy_document", "archive_sink")]["statement"]
    assert [s["actions"] for s in archive] == [["s3:PutObject"]]
    assert archive[0]["resources"] == ["${aws_s3_bucket.archive.arn}/${var.archive_prefix}/*"]
    email = TF.data[("aws_iam_policy_document", "email_sink")]["statement"]
    assert email[0]["resources"] == [
        "${aws_sesv2_email_identity.domain.arn}",
        "${aws_sesv2_configuration_set.main.arn}",
    ]


def test_tasks_read_only_their_secrets_and_databases_admit_only_tasks() -> None:
    """The execution role reads exactly the secrets some task gets (the admin token's only
    when it exists), and no task role reads any secret."""
    execution = TF.data[("aws_iam_policy_document", "execution")]["statement"]
    secrets = [s for s in execution if "secretsmanager:GetSecretValue" in s["actions"]]
    assert [(s["actions"], s["resources"]) for s in secrets] == [
        (
            ["secretsmanager:GetSecretValue"],
            "${[for secret in values(local.task_secrets) : secret.arn "
            "if length(secret.roles) > 0]}",
        )
    ]
    for admin_api_enabled in (False, True):
        injected = {
            arn
            for secrets_ in secrets_by_task(admin_api_enabled).values()
            for arn in secrets_.values()
        }
        readable = {
            secret["arn"]
            for secret in TF.locals["task_secrets"].values()
            if (
                secret["roles"]
                if isinstance(secret["roles"], list)
                else ROLE_EXPRESSIONS[secret["roles"]](admin_api_enabled)
            )
        }
        assert readable == injected
    for (type_name, name), body in TF.data.items():
        if type_name == "aws_iam_policy_document" and name != "execution":
            assert "secretsmanager" not in json.dumps(body), name
    ingress = TF.of_type("aws_vpc_security_group_ingress_rule")
    open_to_world = [
        name for name, rule in ingress.items() if "cidr_ipv4" in rule and "alb" not in name
    ]
    assert not open_to_world, open_to_world  # only the load balancer takes outside traffic


def test_terraform_files_are_formatted_like_terraform_fmt_would_leave_them() -> None:
    """What can be checked of `terraform fmt` without the binary: two-space indents, no
    tabs, no trailing spaces, one final newline."""
    for path in sorted(TERRAFORM.glob("*.tf")):
        text = path.read_text()
        assert text.endswith("\n") and not text.endswith("\n\n"), path.name
        for number, line in enumerate(text.splitlines(), 1):
            assert "\t" not in line and line == line.rstrip(), f"{path.name}:{number}"
            indent = len(line) - len(line.lstrip(" "))
            assert indent % 2 == 0, f"{path.name}:{number}: odd indent"


def test_example_tfvars_sets_every_required_variable_and_no_unknown_one() -> None:
    import hcl2

    options = hcl2.SerializationOptions(
        with_comments=False, explicit_blocks=False, strip_string_quotes=True
    )
    with open(TERRAFORM / "example.tfvars") as f:
        example = hcl2.load(f, serialization_options=options)
    required = {name for name, v in TF.variables.items() if "default" not in v}
    assert required == {"ses_domain", "email_from", "image_tag"}
    assert required <= set(example) <= set(TF.variables)
