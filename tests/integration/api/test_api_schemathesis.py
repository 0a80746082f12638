"""Property-based run of /api/openapi.json against the live API (`pricewatch api` as a real
process, on the real broker and PostgreSQL): no input makes it answer 5xx, and every answer
matches the document (status codes, content types, response schemas)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis import checks as st_checks

from launcher.processes import Process, free_port, pricewatch_command
from tests.conftest import ARTIFACTS, Broker, fresh_database

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

ADMIN = "schemathesis-admin-token-0123456789"
EXAMPLES_PER_OPERATION = int(
    os.environ.get("ST_EXAMPLES", "12")
)  # ~30 operations: the whole run stays well under a minute


CHECKS = {
    GenerationMode.POSITIVE: [
        st_checks.not_a_server_error,
        st_checks.status_code_conformance,
        st_checks.content_type_conformance,
        st_checks.response_schema_conformance,
    ],
    # Invalid input: it must be refused cleanly (4xx, documented), never crash anything.
    GenerationMode.NEGATIVE: [
        st_checks.not_a_server_error,
        st_checks.status_code_conformance,
        st_checks.content_type_conformance,
    ],
}


@pytest.fixture(scope="module")
def live_api(
    broker: Broker, postgres_server: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    import asyncio

    from pricewatch.db.engine import upgrade
    from pricewatch.kafka import create_topics
    from pricewatch.settings import Settings

    prefix = f"t{uuid.uuid4().hex[:8]}-"
    data_dir: Path = tmp_path_factory.mktemp("schemathesis")
    port = free_port()
    for database_url in fresh_database(postgres_server):
        upgrade(database_url)
        asyncio.run(
            create_topics(
                Settings(kafka_bootstrap_servers=broker.bootstrap_servers, topic_prefix=prefix)
            )
        )
        env = {
            **os.environ,
            "PRICEWATCH_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
            "PRICEWATCH_KAFKA_EMBEDDED": str(broker.embedded).lower(),
            "PRICEWATCH_TOPIC_PREFIX": prefix,
            "PRICEWATCH_DATABASE_URL": database_url,
            "PRICEWATCH_DATA_DIR": str(data_dir),
            "PRICEWATCH_API_PORT": str(port),
            "PRICEWATCH_SECRET_KEY": "schemathesis-secret-0123456789",
            "PRICEWATCH_ADMIN_TOKEN": ADMIN,
            # The limits have their own test; here they would only hide deeper paths.
            "PRICEWATCH_RATE_LIMIT_PER_ADDRESS_PER_MINUTE": "1000000",
            "PRICEWATCH_RATE_LIMIT_PER_EMAIL_PER_HOUR": "1000000",
        }
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        log = ARTIFACTS / "schemathesis-api.log"
        log.unlink(missing_ok=True)
        with Process("api", pricewatch_command("api"), log, env=env).start() as process:
            process.wait_for_port("127.0.0.1", port, 60)
            yield f"http://127.0.0.1:{port}"


def test_the_api_keeps_its_document_and_never_fails(
    live_api: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import schemathesis.transport.requests as transport

    # grafana-client pulls in urllib3-future, which replaces urllib3's pool container; the
    # connection count schemathesis keeps (to resend on a dropped keep-alive) cannot read
    # it. Counting 0 only turns that resend off.
    monkeypatch.setattr(transport, "_count_opened_connections", lambda session: 0)
    schema = schemathesis.openapi.from_url(f"{live_api}/api/openapi.json")
    failures: dict[str, str] = {}
    operations = 0
    calls = [0]

    def fuzz(operation: Any, mode: GenerationMode) -> Any:
        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,  # the same examples every run: a failure reproduces
            database=None,
        )
        def run(case: Any) -> None:
            calls[0] += 1
            case.call_and_validate(
                headers={"Authorization": f"Bearer {ADMIN}"}, checks=CHECKS[mode]
            )

        return run

    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                fuzz(operation, mode)()
            except Unsatisfiable:
                assert mode is GenerationMode.NEGATIVE  # nothing to get wrong: no input at all
            except (Exception, BaseExceptionGroup) as exc:  # collect them all, then report
                failures[f"{operation.label} ({mode.value})"] = str(exc)[:3000]
    assert not failures, "\n\n".join(f"{k}:\n{v}" for k, v in failures.items())
    print(f"schemathesis: {operations} operations, {calls[0]} requests")
    assert operations >= 25 and calls[0] >= 10 * operations, (operations, calls)
