"""The deployment tests: a package, so that its conftest's package-scoped fixtures end with it
(a directory without this file gives them the whole session's scope)."""
