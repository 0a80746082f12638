"""Reading a product page: the extractor chain (``chain``), one module per kind of extractor,
and value parsing (``values``)."""
