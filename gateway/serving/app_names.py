"""Names of the Serve applications a gateway installation deploys on a Ray cluster.

Serve application names are global on a cluster. The embedded default (one installation, often its own
private head) names a model's application ``model-<name>``; an installation given an id
(``MAAS_INSTALLATION``) names it ``<id>_model-<name>``, so two independent installations on one cluster
neither collide nor read, update or delete each other's applications. The id cannot contain ``_``, so no
installation's prefix is the start of another's.
"""

from __future__ import annotations

import re

from gateway.catalog.schema import ModelEntry

APP_PREFIX = "model-"
_INSTALLATION = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?$")


def check_installation(installation: str) -> str:
    """``installation`` if it is a valid id (1 to 32 of a-z, 0-9 and inner hyphens), else ValueError."""
    if not _INSTALLATION.match(installation):
        raise ValueError(
            f"installation id {installation!r} must be 1 to 32 lower-case letters, digits and inner hyphens"
        )
    return installation


def app_prefix(installation: str | None = None) -> str:
    """What every Serve application of this installation starts with."""
    if installation is None:
        return APP_PREFIX
    return f"{check_installation(installation)}_{APP_PREFIX}"


def app_name(model: ModelEntry, installation: str | None = None) -> str:
    return app_prefix(installation) + model.name
