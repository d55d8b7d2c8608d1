"""Where the gateway keeps its data, read once from the environment and passed down explicitly."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

OFF = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class Settings:
    """Paths the gateway writes to.

    ``home`` holds the SQLite database and, unless ``models_dir`` says otherwise, prepared model folders.
    """

    home: Path
    models_dir: Path
    database_url: str | None = None
    """PostgreSQL URL for all shared state: tenants, keys, limits, budgets, the audit log, the ledger and
    (without ``redis_url``) the admission counters, so several gateways share them; None: SQLite under
    ``home``."""
    redis_url: str | None = None
    """Redis URL for the rate-limit and budget counters (a counter write per request, off the database);
    None: the counters live in the database."""
    installation: str | None = None
    """This installation's id (``MAAS_INSTALLATION``): names its Serve applications and Redis keys apart from
    another installation's on the same Ray cluster or Redis; None: the embedded default's names."""
    key_cache_seconds: float = 5.0
    """How long a gateway caches a key's lookup: the most a key revoked or a limit changed through another
    gateway takes to hold on this one."""
    ledger_durability: str = "power-loss"
    """``power-loss`` (fsync before answering) or ``crash`` (survives a killed gateway); see open_ledger."""

    replica_channels: bool = True
    """Replicas stream to the gateway over their own channels (``MAAS_REPLICA_CHANNELS=0``: only through
    Serve's handles)."""

    @property
    def database_path(self) -> Path:
        return self.home / "maas.db"

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ) if environ is None else environ
        home = Path(env.get("MAAS_HOME") or Path.home() / ".maas").expanduser()
        models_dir = Path(env.get("MAAS_MODELS_DIR") or home / "models").expanduser()
        return cls(
            home=home,
            models_dir=models_dir,
            database_url=env.get("MAAS_DATABASE_URL") or None,
            redis_url=env.get("MAAS_REDIS_URL") or None,
            installation=env.get("MAAS_INSTALLATION") or None,
            key_cache_seconds=float(env.get("MAAS_KEY_CACHE_SECONDS") or 5.0),
            ledger_durability=env.get("MAAS_LEDGER_DURABILITY") or "power-loss",
            replica_channels=(env.get("MAAS_REPLICA_CHANNELS") or "1").strip().lower() not in OFF,
        )

    def ensure_dirs(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.models_dir.mkdir(parents=True, exist_ok=True)
