# One image for every Pricewatch role (worker, scraper, sinks, api): the command picks it.
FROM python:3.11.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY pricewatch pricewatch
COPY streams streams
COPY producers producers
COPY sinks sinks
COPY grafana grafana
RUN python -m venv /opt/pricewatch \
 && /opt/pricewatch/bin/pip install --no-cache-dir -c constraints.txt .

FROM python:3.11.11-slim-bookworm
RUN useradd --system --uid 10001 --home-dir /var/lib/pricewatch --create-home pricewatch
COPY --from=build /opt/pricewatch /opt/pricewatch
ENV PATH=/opt/pricewatch/bin:$PATH PRICEWATCH_DATA_DIR=/var/lib/pricewatch
USER pricewatch
WORKDIR /var/lib/pricewatch
ENTRYPOINT ["pricewatch"]
CMD ["--help"]
