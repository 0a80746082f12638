"""The extractors of ``producers.extract``'s chain, one module per kind, plus value parsing."""
