"""The one typed settings object. Built at an entry point from the environment and passed down.

Every variable is ``PRICEWATCH_<FIELD>`` (case-insensitive); the README lists them.
Nothing below the entry points reads the environment.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from pricewatch.contract.topics import TopicSpec

# Apprise schemes a person may add as "another service" unless the admin says otherwise:
# services reached over HTTP(S), where the URL guard watches every connection.
DEFAULT_NOTIFY_SCHEMES = (
    "json,jsons,form,forms,gotify,gotifys,mmost,mmosts,matrix,matrixs,msteams,pover,rocket,rockets"
)


# Secret keys published in this repository (docker-compose.yml, .env.example); any key
# starting "insecure" is taken to be one too.
PUBLIC_SECRET_KEYS = frozenset({"insecure-laptop-only-link-signing-key-set-your-own"})


def is_public_secret_key(key: str) -> bool:
    return key in PUBLIC_SECRET_KEYS or key.lower().startswith("insecure")


# Bulk consumers' fetch wait, as a multiple of the alert path's longest wait.
BULK_WAIT_FACTOR = 8


@dataclass(frozen=True)
class FetchWait:
    """A consumer's fetch wait in ms: ``min_ms`` while records flow, growing to ``max_ms``
    while fetches come back empty."""

    min_ms: int
    max_ms: int


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PRICEWATCH_", extra="ignore")

    # --- Kafka -------------------------------------------------------------------
    kafka_bootstrap_servers: str | None = Field(
        default=None,
        description="host:port[,host:port]. Unset: start the embedded tansu broker.",
    )
    kafka_embedded: bool = Field(
        default=False,
        description="The broker at kafka_bootstrap_servers is the embedded tansu (set by the "
        "launcher for child processes and tests): apply its workarounds.",
    )
    topic_partitions: int = Field(default=4, ge=1, description="Partitions per topic.")
    topic_replication_factor: int = Field(default=1, ge=1)
    app_id: str = Field(default="pricewatch", description="Faust app id / group prefix.")
    topic_prefix: str = Field(
        default="", description="Prepended to every topic name (shared clusters, test isolation)."
    )
    kafka_fetch_wait_min_ms: int | None = Field(
        default=None,
        ge=1,
        description="A consumer's fetch wait while records flow: the wait grows (fourfold) "
        "while fetches come back empty, up to kafka_fetch_wait_max_ms, and drops back here "
        "when records arrive. Unset: 5 ms on the embedded broker (it answers a waiting "
        "fetch only when the wait ends, so the wait is latency on every hop), 500 ms on a "
        "real cluster (which answers as soon as data arrives).",
    )
    kafka_fetch_wait_max_ms: int | None = Field(
        default=None,
        ge=1,
        description="A consumer's fetch wait after a quiet spell: what an idle consumer "
        "costs (one fetch per wait) and, on the embedded broker, the most latency the first "
        "record after a quiet spell sees on the alert path (the worker, and the email and "
        "channels sinks' notifications). The other consumers (scraper, account emails, "
        "channel confirmations, PostgreSQL and archive sinks) wait from this up to 8 times "
        "as long. Unset: 250 ms on the embedded broker, 500 ms on a real cluster. Raise "
        "both for tansu on s3:// storage, where every fetch is S3 requests.",
    )
    kafka_producer_linger_ms: int | None = Field(
        default=None,
        ge=0,
        description="How long a producer (scrapers, sinks, the API; not the stream worker, "
        "which waits for each batch's acknowledgement) gathers records into one request. "
        "Unset: 20 ms on the embedded broker, where every produce request costs about a "
        "millisecond of CPU whatever it carries (at 5 ms, 1,000 observations a second kept "
        "it ~40 % busy and its queue added more latency than the linger saves), 5 ms on a "
        "real cluster.",
    )
    kafka_session_timeout_seconds: float | None = Field(
        default=None,
        description="Consumer session timeout. Unset: 6 s on the embedded broker "
        "(its group joins take ~timeout/2), 30 s on a real cluster.",
    )
    kafka_commit_interval_seconds: float = Field(
        default=2.8,
        gt=0,
        description="How often a stream worker commits the offsets it has processed. A "
        "restarted worker re-reads what came after its last commit (replays change nothing), "
        "so a longer interval means more re-reading after a crash, not lost data.",
    )

    # --- PostgreSQL --------------------------------------------------------------
    database_url: str | None = Field(
        default=None,
        description="postgresql://... Unset: start an embedded PostgreSQL in data_dir.",
    )

    # --- Local state -------------------------------------------------------------
    data_dir: Path = Field(
        default=Path(".pricewatch"),
        description="Embedded PostgreSQL data, worker table stores, email outbox.",
    )

    # --- HTTP --------------------------------------------------------------------
    api_host: str = "127.0.0.1"
    api_port: int = 8080
    public_base_url: str | None = Field(
        default=None, description="Base URL used in email links. Unset: http://api_host:api_port."
    )
    demo_shop_port: int = 8081
    worker_web_port: int = Field(default=0, description="Faust worker web port (0 = off).")

    # --- Scraping ----------------------------------------------------------------
    default_check_interval_seconds: float = Field(default=300.0, gt=0)
    check_jitter_fraction: float = Field(default=0.1, ge=0, le=1)
    scheduler_tick_seconds: float = Field(default=1.0, gt=0)
    check_result_timeout_seconds: float = Field(
        default=600.0,
        gt=0,
        description="A product is checked one interval after its last request, but never "
        "while that request's result has not come back; a request with no result after this "
        "long (at least one interval) is made again.",
    )
    user_agent: str = "Pricewatch/0.1 (+https://github.com/pricewatch/pricewatch)"
    fetch_timeout_seconds: float = Field(default=15.0, gt=0)
    max_response_bytes: int = Field(default=5_000_000, gt=0)
    scraper_concurrency: int = Field(default=32, ge=1)
    allowed_private_hosts: str = Field(
        default="",
        description="Comma-separated host[:port] allowed although they resolve to "
        "loopback/private addresses (the demo shop, tests).",
    )
    site_adapters_file: Path | None = Field(
        default=None,
        description="JSON file mapping host -> site adapter (CSS/XPath selectors, or a JSON "
        "API URL and paths), tried before the generic extractors. Unset: none.",
    )

    # --- Render tier (pages that need JavaScript) ----------------------------------------
    render_fallback: bool = Field(
        default=False,
        description="Render a page in the browser when its static HTML shows no price "
        "(besides websites whose site adapter says render: true).",
    )
    render_cdp_url: str | None = Field(
        default=None,
        description="A long-running Chromium's DevTools URL (http://chromium:9222) to render "
        "in. Unset: launch render_chromium_path on the first render.",
    )
    render_chromium_path: Path = Field(
        default=Path("/usr/bin/chromium"),
        description="The Chromium launched for renders without render_cdp_url (the "
        "system's; 'make browser-deps' installs Debian's).",
    )
    render_concurrency: int = Field(
        default=2, ge=1, description="Pages rendered at once per scraper process."
    )
    render_timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        description="Longest render of one page (and longest wait for a free render slot).",
    )
    render_settle_seconds: float = Field(
        default=2.0,
        ge=0,
        description="After the page's load event, how long a render waits at most for the "
        "network to go quiet (prices often arrive by a script's request).",
    )

    # --- Scraper politeness, retries and check scheduling -----------------------------
    scraper_queue_limit: int = Field(
        default=128,
        ge=1,
        description="Scrape requests one scraper process holds at once (fetching or waiting "
        "for their host's turn); half of it at most from one partition.",
    )
    host_max_concurrent_requests: int = Field(
        default=2,
        ge=1,
        description="Requests in flight to one host (URL host name) per scraper process. "
        "A site adapter may override it per website.",
    )
    host_min_request_interval_seconds: float = Field(
        default=1.0,
        ge=0,
        description="Minimum time between the starts of two requests to one host per scraper "
        "process (1.0: at most 1 request/s). A site adapter may override it per website.",
    )
    fetch_max_attempts: int = Field(
        default=3,
        ge=1,
        description="Attempts per fetch on transient errors (timeout, connection error, 5xx, "
        "429); 1: no retries.",
    )
    retry_backoff_base_seconds: float = Field(
        default=1.0,
        ge=0,
        description="Backoff before retry n is uniform in [0, base * 2^(n-1)] (full jitter).",
    )
    retry_backoff_max_seconds: float = Field(
        default=30.0, ge=0, description="Upper bound of one backoff wait."
    )
    retry_after_max_seconds: float = Field(
        default=120.0,
        ge=0,
        description="Longest Retry-After (429/503) honoured; a longer one ends the fetch as "
        "an error observation 'rate_limited'.",
    )
    conditional_cache_entries: int = Field(
        default=100_000,
        ge=0,
        description="URLs whose ETag/Last-Modified and last extraction a scraper remembers "
        "for conditional GETs (least recently used dropped first; 0: no conditional GETs).",
    )
    respect_robots_txt: bool = Field(
        default=True,
        description="Fetch and obey each host's robots.txt (matched with user_agent).",
    )
    robots_cache_seconds: float = Field(
        default=3600.0, gt=0, description="How long a host's robots.txt is kept before refetch."
    )
    near_target_fraction: float = Field(
        default=0.05,
        ge=0,
        description="A product whose last price is above the lowest active target price by at "
        "most this fraction (0.05: 5 %) is checked more often.",
    )
    near_target_interval_factor: float = Field(
        default=0.25,
        gt=0,
        le=1,
        description="Check interval of a product near its target: the default interval times "
        "this factor.",
    )

    paused_hosts_refresh_seconds: float = Field(
        default=30.0,
        gt=0,
        description="How often scrapers re-read the websites an admin paused (PostgreSQL; "
        "without database_url nothing is paused).",
    )

    detector_cache_entries: int = Field(
        default=200_000, ge=0, description="Decoded product states a worker keeps in memory."
    )

    # --- Alerts ------------------------------------------------------------------
    removed_confirmations: int = Field(
        default=2, ge=1, description="Consecutive 404s before a product is removed (410: one)."
    )
    alert_cooldown_seconds: float = Field(
        default=86400.0,
        ge=0,
        description="After a price alert, another one without a new crossing only after "
        "this long, and only at a lower price.",
    )
    stock_flap_window_seconds: float = Field(
        default=3600.0,
        ge=0,
        description="At most one stock alert of each kind per window; a change held back is "
        "told when the window is over if it still holds.",
    )

    # --- Channels (sinks/channels) ---------------------------------------------------
    notify_schemes: str = Field(
        default=DEFAULT_NOTIFY_SCHEMES,
        description="Comma-separated Apprise schemes a person may add as 'another Apprise "
        "URL' (webhook, ntfy, Telegram, Discord and Slack have forms of their own). Keep "
        "to services reached over HTTP(S): the URL guard watches those connections.",
    )
    channels_per_address: int = Field(
        default=10, ge=0, description="Channels one email address may have."
    )
    channel_send_timeout_seconds: float = Field(
        default=15.0, gt=0, description="Time allowed for one message to one channel."
    )
    channel_max_attempts: int = Field(
        default=8,
        ge=1,
        description="Attempts per message and channel on temporary failures (timeouts, "
        "connection errors, 5xx, 429) before it counts as failed.",
    )
    channel_retry_backoff_seconds: float = Field(
        default=30.0,
        gt=0,
        description="Wait before retry n of a message: this times 2^(n-1), at most "
        "channel_retry_backoff_max_seconds.",
    )
    channel_retry_backoff_max_seconds: float = Field(
        default=3600.0, gt=0, description="Longest wait between two attempts."
    )
    channel_pause_after_failures: int = Field(
        default=5,
        ge=1,
        description="A channel failing permanently this many times in a row is paused, and "
        "its owner told by email.",
    )

    # --- Email -------------------------------------------------------------------
    email_backend: Literal["outbox", "smtp", "ses"] = "outbox"
    email_from: str = "Pricewatch <alerts@pricewatch.localhost>"
    outbox_dir: Path | None = Field(default=None, description="Unset: data_dir/outbox.")
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    ses_region: str | None = Field(default=None, description="Unset: boto3's default chain.")
    ses_endpoint_url: str | None = Field(
        default=None, description="A non-AWS SES endpoint (e.g. a local moto server)."
    )

    # --- Archive (S3) ------------------------------------------------------------
    s3_bucket: str | None = Field(
        default=None,
        description="Archive every observation to this S3 bucket. Unset: no archive.",
    )
    s3_prefix: str = Field(default="observations", description="Key prefix of archive objects.")
    s3_endpoint_url: str | None = Field(
        default=None, description="A non-AWS S3 endpoint (MinIO, a local moto server)."
    )
    s3_region: str | None = Field(default=None, description="Unset: boto3's default chain.")

    # --- Observability -----------------------------------------------------------
    log_level: str = "INFO"
    metrics_host: str = Field(
        default="127.0.0.1", description="Address of each process's /metrics endpoint."
    )
    metrics_port: int | None = Field(
        default=None,
        ge=0,
        description="Port of this process's /metrics endpoint (a --metrics-port flag wins). "
        "Unset or 0: none. docker-compose gives every service the same port.",
    )

    # --- Accounts, links and the public API (api/) ---------------------------------
    secret_key: SecretStr | None = Field(
        default=None,
        description="Signs the links in emails (verify, unsubscribe, manage, channel "
        "confirmation) and seals channel URLs (HKDF). Required in production, the same in "
        "the API, the email sink and the channels sink; at least 16 bytes. Unset: "
        "the demo/Stack generates one in data_dir/secret_key for its child processes.",
    )
    demo: bool = Field(
        default=False,
        description="A demo or laptop run: the API may start with a public secret key "
        "(docker-compose's default). Never set it where others can reach the API.",
    )
    admin_token: SecretStr | None = Field(
        default=None,
        description="Bearer token of the /api/admin endpoints. Unset: the admin API is off.",
    )
    verify_token_ttl_seconds: float = Field(
        default=7 * 86400.0,
        gt=0,
        description="How long a verification link (address or subscription) works.",
    )
    manage_token_ttl_seconds: float = Field(
        default=7 * 86400.0, gt=0, description="How long a 'manage my subscriptions' link works."
    )
    unsubscribe_token_ttl_seconds: float = Field(
        default=400 * 86400.0,
        gt=0,
        description="How long the unsubscribe link of an email works (counted from the email).",
    )
    trusted_proxies: Annotated[list[ipaddress.IPv4Network | ipaddress.IPv6Network], NoDecode] = (
        Field(
            default_factory=list,
            description="Comma-separated networks (CIDR) of the reverse proxies / load "
            "balancers in front of the API. Only a request from one of them has its "
            "X-Forwarded-For read, and the client is its rightmost address outside these "
            "networks. Empty: the TCP peer is the client, X-Forwarded-For is ignored.",
        )
    )
    dns_lookup_timeout_seconds: float = Field(
        default=2.0,
        gt=0,
        description="How long the API waits for a URL's host name to resolve when it is "
        "subscribed to (the URL guard's check); a name that does not resolve in time is "
        "refused with 422 (a name that does not exist is let through).",
    )
    dns_lookup_concurrency: int = Field(
        default=4,
        ge=1,
        description="Name lookups the API runs at once, on threads of their own (never the "
        "database's): a hanging DNS server can hold no more than these.",
    )
    rate_limit_per_address_per_minute: float = Field(
        default=20.0,
        gt=0,
        description="Sign-up/subscription calls per client address and minute (burst: as many).",
    )
    rate_limit_per_email_per_hour: float = Field(
        default=10.0,
        gt=0,
        description="Sign-up/subscription calls per mailbox (lower-case, +tag dropped) and "
        "hour. Manage-link calls are not counted: at most one such email an hour goes out.",
    )
    rate_limit_admin_failures_per_hour: float = Field(
        default=10.0,
        gt=0,
        description="Wrong admin tokens per client address and hour; past it every admin "
        "call of that client gets 429 until the bucket refills.",
    )
    confirmation_emails_per_email_per_day: float = Field(
        default=20.0,
        gt=0,
        description="Subscription confirmation emails per verified address and day; requests "
        "beyond it are answered as usual but send nothing (anyone can ask for one).",
    )

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _networks(cls, value: Any) -> Any:
        # From the environment: "10.0.0.0/24, 10.0.1.0/24"; a host address is a /32 (/128).
        if isinstance(value, str):
            value = [item.strip() for item in value.split(",") if item.strip()]
        if isinstance(value, list | tuple):
            return [ipaddress.ip_network(str(item), strict=False) for item in value]
        return value

    # ------------------------------------------------------------------------------
    @property
    def embedded_broker(self) -> bool:
        return self.kafka_embedded or not self.kafka_bootstrap_servers

    @property
    def producer_linger_ms(self) -> int:
        if self.kafka_producer_linger_ms is not None:
            return self.kafka_producer_linger_ms
        return 20 if self.embedded_broker else 5

    @property
    def session_timeout_seconds(self) -> float:
        if self.kafka_session_timeout_seconds is not None:
            return self.kafka_session_timeout_seconds
        return 6.0 if self.embedded_broker else 30.0

    def fetch_wait(self, bulk: bool = False) -> FetchWait:
        """The adaptive fetch wait of a consumer (``pricewatch.kafka``): the alert path's,
        or with ``bulk`` that of consumers whose records nobody waits for."""
        embedded = self.embedded_broker
        low = self.kafka_fetch_wait_min_ms or (5 if embedded else 500)
        high = max(low, self.kafka_fetch_wait_max_ms or (250 if embedded else 500))
        if bulk:
            return FetchWait(max(low, high), BULK_WAIT_FACTOR * high)
        return FetchWait(low, high)

    @property
    def heartbeat_interval_seconds(self) -> float:
        # A third of the session, Kafka's own guidance: every member heartbeats to the
        # broker, and at rest the demo's nine consumers' heartbeats were a tenth of its CPU.
        return max(0.5, min(3.0, self.session_timeout_seconds / 3))

    @property
    def outbox_path(self) -> Path:
        return self.outbox_dir or self.data_dir / "outbox"

    @property
    def api_base_url(self) -> str:
        return (self.public_base_url or f"http://{self.api_host}:{self.api_port}").rstrip("/")

    @property
    def notify_scheme_set(self) -> frozenset[str]:
        return frozenset(s.strip().lower() for s in self.notify_schemes.split(",") if s.strip())

    @property
    def allowed_private_host_set(self) -> frozenset[str]:
        return frozenset(
            h.strip().lower() for h in self.allowed_private_hosts.split(",") if h.strip()
        )

    def topic(self, spec: TopicSpec) -> str:
        """The full name of a topic Pricewatch owns."""
        return f"{self.topic_prefix}{spec.name}"

    def group(self, role: str) -> str:
        """The consumer group of a process role, e.g. ``pricewatch-scrapers``."""
        return f"{self.app_id}-{role}"

    def bootstrap(self) -> str:
        """The bootstrap servers; only valid once a broker is configured or launched."""
        if not self.kafka_bootstrap_servers:
            raise RuntimeError(
                "no Kafka bootstrap servers configured and no embedded broker started"
            )
        return self.kafka_bootstrap_servers

    def secret_key_bytes(self) -> bytes:
        """The link-signing key; a clear error where a process needs it and it is unset."""
        if self.secret_key is None:
            raise RuntimeError(
                "PRICEWATCH_SECRET_KEY is not set: the API, the email sink and the channels sink "
                "need the same secret key to sign and check the links they email and to seal "
                "channel URLs (pricewatch demo makes one)"
            )
        key = self.secret_key.get_secret_value().encode()
        if len(key) < 16:
            raise RuntimeError(
                "PRICEWATCH_SECRET_KEY must be at least 16 bytes (32+ random is good)"
            )
        return key

    def refuse_public_secret_key(self) -> None:
        """A key anyone can read (docker-compose's default) lets anyone forge every link:
        refused unless this is a demo (``PRICEWATCH_DEMO=true``)."""
        key = self.secret_key_bytes().decode(errors="replace")
        if is_public_secret_key(key) and not self.demo:
            raise RuntimeError(
                "PRICEWATCH_SECRET_KEY is a public default, so anyone could forge verify, "
                "unsubscribe and manage links: set your own (openssl rand -hex 32), or "
                "PRICEWATCH_DEMO=true for a laptop demo nobody else can reach"
            )

    def database(self) -> str:
        if not self.database_url:
            raise RuntimeError("no database URL configured and no embedded PostgreSQL started")
        return self.database_url
