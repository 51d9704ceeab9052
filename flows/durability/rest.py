"""Reads of the Prefect server through its REST API with httpx alone.

`agentflow runs` and `status` only read: importing Prefect's client for that costs more
(1.2-1.4 s on a 2-core machine) than the whole answer. Prefect's REST API is documented and
stable (`/flow_runs/filter`, `/task_runs/filter`, `/flows/filter`): these reads use it
directly, answering as Prefect's client would (the API URL and its credentials from the
environment or the active profile). With no server configured, Prefect's embedded server is
started as its client would start it (that one imports Prefect: it is Prefect).
"""

from __future__ import annotations

import base64
from typing import Any

import httpx

from agentflow import _prefect_env

_TIMEOUT_S = 30.0


def api_url() -> str:
    """The API these reads go to: PREFECT_API_URL (the environment or the profile; the local
    server `use_local_server` set), else Prefect's embedded server, started if need be."""
    url = _prefect_env.setting("PREFECT_API_URL")
    if url:
        return url.rstrip("/")
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()
    if not server.running:
        server.start()
    return server.api_url.rstrip("/")


def _headers() -> dict[str, str]:
    key = _prefect_env.setting("PREFECT_API_KEY")
    if key:  # Prefect Cloud
        return {"Authorization": f"Bearer {key}"}
    auth = _prefect_env.setting("PREFECT_API_AUTH_STRING")
    if auth:  # a server protected with PREFECT_SERVER_API_AUTH_STRING
        return {"Authorization": "Basic " + base64.b64encode(auth.encode()).decode()}
    return {}


class Reader:
    """One connection to the API for a command's reads."""

    def __init__(self) -> None:
        self._client = httpx.Client(base_url=api_url() + "/", headers=_headers(), timeout=_TIMEOUT_S)

    def __enter__(self) -> "Reader":
        return self

    def __exit__(self, *exc: Any) -> None:
        self._client.close()

    def get(self, path: str) -> Any:
        """The JSON of a GET; None for a 404."""
        response = self._client.get(path)
        if response.status_code == 404:
            return None
        response.raise_for_status()
        return response.json()

    def post(self, path: str, body: dict[str, Any]) -> Any:
        response = self._client.post(path, json=body)
        response.raise_for_status()
        return response.json()
