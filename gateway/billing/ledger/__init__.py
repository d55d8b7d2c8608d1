"""The usage ledger: one durable record per request attempt, the truth for bills.

``records`` holds the record type, ``writer`` the group-commit writer that every store shares, and one
module per database (SQLite as the embedded default, PostgreSQL for several gateway replicas).
"""

from gateway.billing.ledger.records import UsageQuery, UsageRecord, UsageRow
from gateway.billing.ledger.store import LedgerStore
from gateway.billing.ledger.writer import DURABILITIES, Ledger, open_ledger

__all__ = ["DURABILITIES", "Ledger", "LedgerStore", "UsageQuery", "UsageRecord", "UsageRow", "open_ledger"]
