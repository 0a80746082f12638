"""The public wire contract: topics, their records and JSON Schemas.

Other teams consume these topics. A change that removes or retypes a field bumps
``schema_version``; adding an optional field does not (consumers ignore unknown fields).
"""
