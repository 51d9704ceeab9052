"""An http agent's `url` and `headers`, checked when a definition is loaded: they are fixed
text (a template is not rendered there; a header names an environment variable as ${NAME}),
and each must still be a valid http(s) URL or header when the run sends it. Pure: no I/O."""

from __future__ import annotations

import re
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator
from pydantic_core import PydanticCustomError

_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}$")  # a header name (RFC 9110's token)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_TEMPLATE = ("{{", "{%", "{#")
NOT_ECHOED = "holds_a_credential"  # the error type of a value that an error message must not repeat


def _url(text: str) -> str:
    if any(mark in text for mark in _TEMPLATE) or "${" in text:
        raise ValueError("an http agent's url is fixed text: a template or ${NAME} is not filled in there; "
                         "pass what varies in the request's `with:` or a header")
    if _CONTROL.search(text) or " " in text:
        raise ValueError("an http agent's url cannot hold spaces, line breaks or control characters; "
                         "percent-encode them (%20)")
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("an http agent's url is http:// or https:// followed by a host, e.g. https://example.com/hook")
    if parts.password is not None:
        raise PydanticCustomError(NOT_ECHOED, "an http agent's url cannot hold a password (it would be in the file, "
                                  "the logs and the cache key); send it in a header from the environment: "
                                  "headers: {Authorization: \"Bearer ${TOKEN}\"}")
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number in range
    except ValueError:
        raise ValueError("an http agent's url has a port that is not a number from 1 to 65535") from None
    return text


def _headers(headers: dict[str, str]) -> dict[str, str]:
    for name, value in headers.items():
        if not _TOKEN.match(name):
            raise ValueError(f"{name[:60]!r} cannot be a header name: letters, digits and -_.!#$%&'*+^`|~ only")
        if _CONTROL.search(value.replace("\t", "")):
            raise ValueError(f"header `{name}` holds a line break or control character, which would end the header "
                             "and start another; put the value on one line")
        if any(mark in value for mark in _TEMPLATE):
            raise ValueError(f"header `{name}` is fixed text: a template is not filled in there; name an "
                             "environment variable as ${NAME}")
    return headers


HttpUrl = Annotated[str, AfterValidator(_url)]
Headers = Annotated[dict[str, str], AfterValidator(_headers)]
