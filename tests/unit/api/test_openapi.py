"""/api/openapi.json documents exactly the routes the app serves, and is a valid OpenAPI 3.1."""

from __future__ import annotations

from pydantic import SecretStr

from api.app import create_api_app
from api.openapi import openapi_document
from pricewatch.db.engine import make_engine
from pricewatch.kafka import make_producer
from pricewatch.settings import Settings

SETTINGS = Settings(
    kafka_bootstrap_servers="127.0.0.1:1",  # never connected: the app is only built
    secret_key=SecretStr("openapi-test-secret-0123456789"),
)


async def test_every_route_is_documented_and_nothing_else() -> None:
    engine = make_engine("postgresql://nobody@127.0.0.1:1/none")
    app = create_api_app(SETTINGS, make_producer(SETTINGS), engine)
    served = {
        (route.method.lower(), route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None and route.method != "HEAD"  # aiohttp adds HEAD to GET
    }
    document = openapi_document(SETTINGS)
    documented = {(method, path) for path, item in document["paths"].items() for method in item}
    assert served == documented
    engine.dispose()


def test_the_document_is_valid_openapi_and_every_reference_resolves() -> None:
    from schemathesis.specs.openapi.definitions import OPENAPI_31_VALIDATOR

    document = openapi_document(SETTINGS)
    OPENAPI_31_VALIDATOR.validate(document)
    schemas = document["components"]["schemas"]
    text = str(document)
    import re

    for name in re.findall(r"#/components/schemas/([A-Za-z0-9_-]+)", text):
        assert name in schemas, name
    for path, item in document["paths"].items():
        for method, operation in item.items():
            assert operation["responses"], (method, path)
            params = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert params == set(re.findall(r"{(\w+)}", path)), (method, path)
