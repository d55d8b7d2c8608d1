"""Per-request usage records. For now one structured log line per request; the durable ledger comes next.

Records never contain prompts, completions or key secrets.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

logger = logging.getLogger("maas.usage")


@dataclass(frozen=True)
class UsageRecord:
    request_id: str
    tenant: str
    key_id: str
    model: str
    endpoint: str
    stream: bool
    outcome: str
    prompt_tokens: int
    completion_tokens: int
    duration_s: float


class UsageLog:
    """Receives one record per request attempt, whatever its outcome."""

    def record(self, record: UsageRecord) -> None:
        logger.info(
            "usage request_id=%s tenant=%s key_id=%s model=%s endpoint=%s stream=%s outcome=%s "
            "prompt_tokens=%d completion_tokens=%d duration_s=%.3f",
            record.request_id,
            record.tenant,
            record.key_id,
            record.model,
            record.endpoint,
            record.stream,
            record.outcome,
            record.prompt_tokens,
            record.completion_tokens,
            record.duration_s,
        )
