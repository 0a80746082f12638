"""Pure domain logic: no Kafka, database or HTTP imports. Tested without asyncio."""
