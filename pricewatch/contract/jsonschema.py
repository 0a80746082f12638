"""JSON Schemas of the wire records, published in ``pricewatch/contract/schemas/``.

Regenerate with ``pricewatch contract schemas``; a test fails if the committed files
drift from the records.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pricewatch.contract.topics import ALL_TOPICS, TopicSpec

SCHEMAS_DIR = Path(__file__).parent / "schemas"


def schema_for(spec: TopicSpec) -> dict[str, Any]:
    # The serialization schema: what is on the wire (money as strings).
    schema = spec.record.model_json_schema(mode="serialization")
    version = spec.record.model_fields["schema_version"].default
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://pricewatch.dev/schemas/{spec.name}.v{version}.json",
        "x-topic": spec.name,
        "x-key": spec.key,
        "x-topic-configs": spec.configs,
        **schema,
    }


def schema_path(spec: TopicSpec) -> Path:
    version = spec.record.model_fields["schema_version"].default
    return SCHEMAS_DIR / f"{spec.name}.v{version}.json"


def render(spec: TopicSpec) -> str:
    return json.dumps(schema_for(spec), indent=2, sort_keys=True) + "\n"


def write_schemas() -> list[Path]:
    SCHEMAS_DIR.mkdir(exist_ok=True)
    paths = []
    for spec in ALL_TOPICS:
        path = schema_path(spec)
        path.write_text(render(spec))
        paths.append(path)
    return paths
