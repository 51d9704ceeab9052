"""Prefect's own tools find the local server the way Prefect users configure one: the active
profile's PREFECT_API_URL, what `prefect config set PREFECT_API_URL=...` writes.

`agentflow server start` sets it where nobody configured an API (not in the environment, not
in the profile) and notes in the server's record that it did; `server stop` removes it only
if it still says what agentflow wrote. A profile left pointing at a server that died (a
reboot) is recognised by that note and ignored by agentflow's commands
(agentflow/_prefect_env.py), which then use the embedded server as before.
"""

from __future__ import annotations

import os

from agentflow import prefect_compat


def point_at(api_url: str) -> str | None:
    """Set the active profile's PREFECT_API_URL to `api_url` unless an API is configured
    already; the profile's name if it was set here (or already said `api_url`), else None."""
    from prefect.settings import PREFECT_API_URL, load_profiles, save_profiles

    if os.environ.get("PREFECT_API_URL"):
        return None
    name = prefect_compat.current_profile_name()
    profiles = load_profiles()
    current = profiles[name].settings.get(PREFECT_API_URL) if name in profiles.names else None
    if current == api_url:
        return name
    if current:
        return None  # the user's own server (or Prefect Cloud): theirs to change
    profiles.update_profile(name=name, settings={PREFECT_API_URL: api_url})
    save_profiles(profiles)
    return name


def unpoint(name: str, api_url: str) -> bool:
    """Remove PREFECT_API_URL from profile `name` if it still says `api_url`; whether it did."""
    from prefect.settings import PREFECT_API_URL, load_profiles, save_profiles

    profiles = load_profiles()
    if name not in profiles.names or profiles[name].settings.get(PREFECT_API_URL) != api_url:
        return False
    profiles.update_profile(name=name, settings={PREFECT_API_URL: None})
    save_profiles(profiles)
    return True
