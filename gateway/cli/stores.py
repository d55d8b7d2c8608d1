"""The one place the settings choose where shared state lives: SQLite under ``MAAS_HOME`` by default,
PostgreSQL for everything when ``MAAS_DATABASE_URL`` is set, Redis for the counters when ``MAAS_REDIS_URL``
is set too (see README "Running several gateways")."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.billing.admission import Admission
from gateway.billing.ledger import Ledger, open_ledger
from gateway.cli.settings import Settings
from gateway.tenancy.audit import AuditLog
from gateway.tenancy.database import open_database
from gateway.tenancy.keystore import KeyStore


@dataclass
class Tenancy:
    """Tenants, keys and the audit log, on one connection to one database."""

    keystore: KeyStore
    audit: AuditLog

    def close(self) -> None:
        self.keystore.close()  # the audit log shares its connection


def open_tenancy(settings: Settings, listen: bool = False) -> Tenancy:
    """Migrates the schema on opening (safe from several gateways at once). ``listen``: a serving gateway
    hears other gateways' key and limit changes at once (PostgreSQL LISTEN/NOTIFY)."""
    database = open_database(settings.database_url, settings.database_path)
    keystore = KeyStore(database, cache_seconds=settings.key_cache_seconds, listen=listen)
    return Tenancy(keystore, AuditLog(database))


def open_ledger_for(settings: Settings) -> Ledger:
    return open_ledger(settings.database_url, str(settings.database_path), settings.ledger_durability)


def open_admission_for(settings: Settings) -> Admission:
    from gateway.app import open_admission

    prefix = "maas" if settings.installation is None else f"maas-{settings.installation}"
    return open_admission(settings.database_url, str(settings.database_path), settings.redis_url, prefix)
