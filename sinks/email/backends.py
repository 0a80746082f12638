"""Where emails go: a local outbox directory, an SMTP server, or Amazon SES.

A backend either delivers the message, raises ``PermanentSendError`` when this message can
never be delivered (the recipient is refused), or raises anything else for a temporary
problem (server down, throttled, misconfigured credentials): the sink retries those.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import smtplib
import ssl
import tempfile
from email.message import EmailMessage
from email.utils import parseaddr
from pathlib import Path
from typing import Any, Protocol

import boto3
from botocore.exceptions import ClientError

from pricewatch.settings import Settings

log = logging.getLogger(__name__)

_SAFE_FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,200}")


class PermanentSendError(Exception):
    """This message cannot be delivered, now or on a retry."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason  # short, for a metric label
        self.detail = detail


class EmailBackend(Protocol):
    name: str

    async def send(self, message: EmailMessage, idempotency_key: str) -> None:
        """Deliver ``message``; see the module docstring for what a raise means."""
        ...


class OutboxBackend:
    """Writes ``<idempotency_key>.eml`` into a directory: the demo and test backend."""

    name = "outbox"

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def send(self, message: EmailMessage, idempotency_key: str) -> None:
        if not _SAFE_FILE_NAME.fullmatch(idempotency_key):
            raise PermanentSendError(
                "invalid_key", f"not usable as a file name: {idempotency_key!r}"
            )
        path = await asyncio.to_thread(self._write, message.as_bytes(), idempotency_key)
        log.info("email to %s written to %s", message["To"], path)

    def _write(self, data: bytes, idempotency_key: str) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{idempotency_key}.eml"
        # Written aside and renamed, so a reader never sees half a message.
        fd, tmp_name = tempfile.mkstemp(
            dir=self.directory, prefix=f".{idempotency_key}.", suffix=".tmp"
        )
        try:
            with os.fdopen(fd, "wb") as tmp:
                tmp.write(data)
                tmp.flush()
                os.fsync(tmp.fileno())
            os.replace(tmp_name, path)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
        return path


class SmtpBackend:
    """Any SMTP server (a relay, Mailpit, a provider's SMTP endpoint); one connection per email."""

    name = "smtp"

    def __init__(
        self,
        host: str,
        port: int,
        username: str | None = None,
        password: str | None = None,
        starttls: bool = False,
        timeout_seconds: float = 30.0,
    ) -> None:
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.starttls = starttls
        self.timeout_seconds = timeout_seconds

    async def send(self, message: EmailMessage, idempotency_key: str) -> None:
        await asyncio.to_thread(self._send, message)
        log.info(
            "email %s to %s sent via %s:%d", idempotency_key, message["To"], self.host, self.port
        )

    def _send(self, message: EmailMessage) -> None:
        with smtplib.SMTP(self.host, self.port, timeout=self.timeout_seconds) as smtp:
            if self.starttls:
                smtp.starttls(context=ssl.create_default_context())
            if self.username:
                smtp.login(self.username, self.password or "")
            try:
                smtp.send_message(message)
            except smtplib.SMTPRecipientsRefused as exc:
                codes = [code for code, _ in exc.recipients.values()]
                if codes and all(code >= 500 for code in codes):
                    raise PermanentSendError("recipient_refused", str(exc.recipients)) from exc
                raise
            except smtplib.SMTPDataError as exc:
                # 5xx after DATA: this message is refused (size, content policy). A refused
                # sender or failed login is configuration, not the message: those stay temporary.
                if exc.smtp_code >= 500:
                    raise PermanentSendError("message_rejected", _smtp_text(exc)) from exc
                raise


def _smtp_text(exc: smtplib.SMTPResponseException) -> str:
    error = exc.smtp_error
    text = error.decode(errors="replace") if isinstance(error, bytes) else str(error)
    return f"{exc.smtp_code} {text}"


class SesBackend:
    """Amazon SES v2 with the raw MIME message (credentials and region: boto3's usual chain)."""

    name = "ses"

    # Errors about this message; anything else (throttling, a paused account, an unverified
    # sending domain) is temporary or configuration and is retried.
    PERMANENT_ERROR_CODES = frozenset({"MessageRejected"})

    def __init__(
        self,
        endpoint_url: str | None = None,
        region_name: str | None = None,
        client: Any = None,
    ) -> None:
        if client is None:
            client = boto3.client("sesv2", endpoint_url=endpoint_url, region_name=region_name)
        self.client = client

    async def send(self, message: EmailMessage, idempotency_key: str) -> None:
        message_id = await asyncio.to_thread(self._send, message)
        log.info("email %s to %s sent via SES (%s)", idempotency_key, message["To"], message_id)

    def _send(self, message: EmailMessage) -> str:
        try:
            response = self.client.send_email(
                FromEmailAddress=parseaddr(str(message["From"]))[1],
                Destination={"ToAddresses": [parseaddr(str(message["To"]))[1]]},
                Content={"Raw": {"Data": message.as_bytes()}},
            )
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in self.PERMANENT_ERROR_CODES:
                raise PermanentSendError("message_rejected", str(exc)) from exc
            raise
        return str(response.get("MessageId", ""))


def backend_from_settings(settings: Settings) -> EmailBackend:
    if settings.email_backend == "outbox":
        return OutboxBackend(settings.outbox_path)
    if settings.email_backend == "smtp":
        return SmtpBackend(
            settings.smtp_host,
            settings.smtp_port,
            username=settings.smtp_username,
            password=settings.smtp_password,
            starttls=settings.smtp_starttls,
        )
    return SesBackend(endpoint_url=settings.ses_endpoint_url, region_name=settings.ses_region)
