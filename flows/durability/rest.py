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

from agentflow import prefect_compat
from agentflow import _prefect_env
from agentflow.errors import ConfigError

_TIMEOUT_S = 30.0


def api_url() -> str:
    """The API these reads go to: PREFECT_API_URL (the environment or the profile; the local
    server `use_local_server` set), else Prefect's embedded server, started if need be."""
    url = _prefect_env.setting("PREFECT_API_URL")
    if url:
        return url.rstrip("/")
    server = prefect_compat.embedded_server()
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
        self._url = api_url()
        # Certificates are read only for https: loading them costs 20-40 ms of a 0.3 s answer,
        # and a plain-http URL has no TLS to verify (redirects are not followed).
        self._client = httpx.Client(base_url=self._url + "/", headers=_headers(), timeout=_TIMEOUT_S,
                                    verify=not self._url.startswith("http://"))

    def __enter__(self) -> "Reader":
        return self

    def __exit__(self, *exc: Any) -> None:
        self._client.close()

    def get(self, path: str) -> Any:
        """The JSON of a GET; None for a 404."""
        response = self._client.get(path)
        if response.status_code == 404:
            return None
        return self._json(response)

    def post(self, path: str, body: dict[str, Any]) -> Any:
        return self._json(self._client.post(path, json=body))

    def _json(self, response: httpx.Response) -> Any:
        response.raise_for_status()
        try:
            return response.json()
        except ValueError:
            raise ConfigError(f"{self._url} answered {response.request.url.path} with something other than JSON: "
                              "it is not a Prefect server's API; set PREFECT_API_URL to one (it ends in /api)") from None
