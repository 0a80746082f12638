"""The exactly-once ledger: a PostgreSQL table with one row per message a sink means to send,
claimed before the message is sent. The email sink (``notifications``, one row per
idempotency key) and the channels sink (``channel_deliveries``, one row per key and
channel) share it.

Claim, send, record:

- ``claim`` inserts the row as 'sending', committed before anything is sent, so a
  redelivered message finds it and is skipped. A row 'retrying' (a temporary failure: nothing
  was sent) is taken back instead, once it is due when the table schedules retries.
- the send's outcome is recorded: 'sent', 'failed' (never deliverable) or 'retrying'.
- the one case without a certain answer is a crash between sending and recording: the row
  stays 'sending' and the message is never sent again (at most once, and the row says so).
- an outcome that could not be recorded because the database went away after the send is
  kept in memory (``unrecorded``), and recorded when the same message comes again, instead
  of being found 'sending' and skipped as unconfirmed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import sqlalchemy
from sqlalchemy import text

MAX_ERROR_CHARS: Final = 2000

# What claim() answers.
CLAIMED: Final = "claimed"
UNCONFIRMED: Final = "sending-unconfirmed"  # a process stopped mid-send: never resent

Key = tuple[str, ...]


@dataclass(frozen=True)
class Claim:
    status: str  # CLAIMED, UNCONFIRMED, or the status that forbids sending ('sent', ...)
    attempts: int = 0  # with CLAIMED: this is attempt number ``attempts``


class Ledger:
    """One ledger table: ``key`` its primary-key columns, ``columns`` the others a claim
    writes. ``scheduled``: the table has ``next_attempt_at`` (a 'retrying' row is taken back
    only once due) and ``payload`` (cleared once the message is sent or failed)."""

    def __init__(
        self,
        engine: sqlalchemy.Engine,
        table: str,
        key: Sequence[str],
        columns: Sequence[str],
        *,
        scheduled: bool = False,
        casts: Mapping[str, str] | None = None,
    ) -> None:
        self.engine = engine
        self.key = tuple(key)
        self.unrecorded: dict[Key, tuple[str, str | None, datetime | None]] = {}
        names = [*self.key, *columns]
        casts = casts or {}
        placeholders = [f"CAST(:{c} AS {casts[c]})" if c in casts else f":{c}" for c in names]
        due = " AND (n.next_attempt_at IS NULL OR n.next_attempt_at <= now())" if scheduled else ""
        where_key = " AND ".join(f"{k} = :{k}" for k in self.key)
        self._claim = text(
            f"""
            INSERT INTO {table} AS n ({", ".join(names)}, status, attempts)
            VALUES ({", ".join(placeholders)}, 'sending', 1)
            ON CONFLICT ({", ".join(self.key)}) DO UPDATE
            SET status = 'sending', attempts = n.attempts + 1
            WHERE n.status = 'retrying'{due}
            RETURNING n.attempts
            """
        )
        self._status = text(f"SELECT status FROM {table} WHERE {where_key}")
        final = ", payload = NULL, next_attempt_at = NULL" if scheduled else ""
        self._mark_sent = text(
            f"UPDATE {table} SET status = 'sent', sent_at = now(), last_error = NULL{final} "
            f"WHERE {where_key} AND status = 'sending'"
        )
        scheduled_sets = (
            ", next_attempt_at = :next_attempt_at,"
            " payload = CASE WHEN CAST(:status AS text) = 'failed' THEN NULL ELSE payload END"
            if scheduled
            else ""
        )
        self._mark_unsent = text(
            f"UPDATE {table} SET status = CAST(:status AS text), last_error = :last_error"
            f"{scheduled_sets} WHERE {where_key} AND status = 'sending'"
        )

    def key_of(self, row: dict[str, Any]) -> Key:
        return tuple(str(row[k]) for k in self.key)

    def _params(self, key: Key) -> dict[str, Any]:
        return dict(zip(self.key, key, strict=True))

    # --- claim ----------------------------------------------------------------------

    def claim_now(self, row: dict[str, Any]) -> Claim:
        """CLAIMED if this process may send the message now, else the status that forbids
        it (UNCONFIRMED for a row left 'sending')."""
        with self.engine.begin() as connection:
            claimed = connection.execute(self._claim, row).first()
            if claimed is not None:
                return Claim(CLAIMED, int(claimed[0]))
            status = connection.execute(self._status, row).scalar_one()
        return Claim(UNCONFIRMED if status == "sending" else str(status))

    async def claim(self, row: dict[str, Any]) -> Claim:
        return await asyncio.to_thread(self.claim_now, row)

    # --- record ---------------------------------------------------------------------

    def record_now(
        self, key: Key, status: str, error: str | None, next_attempt_at: datetime | None = None
    ) -> None:
        params = self._params(key)
        with self.engine.begin() as connection:
            if status == "sent":
                connection.execute(self._mark_sent, params)
            else:
                connection.execute(
                    self._mark_unsent,
                    {
                        **params,
                        "status": status,
                        "last_error": (error or "")[:MAX_ERROR_CHARS],
                        "next_attempt_at": next_attempt_at,
                    },
                )

    async def record(
        self, key: Key, status: str, error: str | None, next_attempt_at: datetime | None = None
    ) -> None:
        """Record a send's outcome; if that fails, remember it for the message's next
        delivery (``settle_unrecorded``) and raise."""
        try:
            await asyncio.to_thread(self.record_now, key, status, error, next_attempt_at)
        except Exception:
            self.unrecorded[key] = (status, error, next_attempt_at)
            raise

    async def settle_unrecorded(self, key: Key) -> bool:
        """Record an outcome this process knows but could not record; True when that outcome
        was final (sent, or failed for good): the message must not be sent again."""
        known = self.unrecorded.pop(key, None)
        if known is None:
            return False
        status, error, next_attempt_at = known
        await self.record(key, status, error, next_attempt_at)
        return status != "retrying"
