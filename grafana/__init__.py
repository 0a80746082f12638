"""Grafana dashboards as code: Admin (pipeline health and business view) and User (one
person's products), with their datasources, provisioned from files or pushed over HTTP.

``pricewatch grafana export`` writes ``infra/grafana/dashboards/*.json`` (file provisioning,
as docker-compose mounts it); ``pricewatch grafana push`` creates or updates the same
datasources and dashboards in a running Grafana through its HTTP API.

Who sees what: Grafana is an operator tool and is not exposed to end users. The Admin
dashboard is for whoever runs Pricewatch; the User dashboard is for support, choosing a
person with its ``user`` variable (anyone with Grafana access can choose anyone). A person
sees their own products' price history on the API's manage page, reached through the signed
link in their emails: the link's signature is what limits it to their own subscriptions,
and that page renders its chart itself. Grafana's own access model (an org or a data source
per user, row-level security in PostgreSQL) was not chosen: it would mean a Grafana account
per subscriber, for people who only ever clicked a link in an email.
"""
