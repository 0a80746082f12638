"""Pricewatch's PostgreSQL database, shared by every role that reads or writes it: engines and
migrations (``engine``), the schema (``schema``) and the subscription writes the API and the
subscriptions sink both make (``subscriptions``)."""
