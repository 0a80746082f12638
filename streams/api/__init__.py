"""The subscription HTTP API (aiohttp), a process beside the Faust workers."""
