"""The CLI's client for a running gateway's /admin routes (operator key from --key or $MAAS_ADMIN_KEY)."""

from __future__ import annotations

import os
from typing import Any


class AdminCallFailed(RuntimeError):
    """The gateway could not be reached or answered with an error; the message says which."""


def admin_key(explicit: str | None) -> str:
    key = explicit or os.environ.get("MAAS_ADMIN_KEY")
    if not key:
        raise AdminCallFailed(
            "pass --key or set MAAS_ADMIN_KEY to an operator key (maas keys create --admin)"
        )
    return key


def admin_call(
    method: str,
    url: str,
    path: str,
    key: str,
    *,
    content: bytes | None = None,
    content_type: str | None = None,
    timeout_s: float = 30,
) -> dict[str, Any]:
    """Call ``path`` on the gateway at ``url`` and return its JSON body, or raise ``AdminCallFailed``."""
    import httpx

    headers = {"Authorization": f"Bearer {key}"}
    if content_type:
        headers["Content-Type"] = content_type
    try:
        response = httpx.request(
            method, url.rstrip("/") + path, content=content, headers=headers, timeout=timeout_s
        )
    except httpx.HTTPError as exc:
        raise AdminCallFailed(f"cannot reach the gateway at {url}: {exc}") from None
    try:
        body: dict[str, Any] = response.json()
    except ValueError:
        raise AdminCallFailed(f"the gateway answered {response.status_code}: {response.text[:200]}") from None
    if response.status_code != 200:
        raise AdminCallFailed(str(body.get("error", {}).get("message", response.text)))
    return body
