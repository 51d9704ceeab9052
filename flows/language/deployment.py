"""How a workflow is deployed: its schedules, its event triggers and its work pool.

    schedules:
      - {cron: "0 6 * * 1-5", timezone: Europe/Berlin}
      - {interval: 6h, inputs: {depth: quick}}
      - {rrule: "FREQ=WEEKLY;BYDAY=MO"}
    triggers:
      - event: repo.pushed
        match: {prefect.resource.id: "repo.*"}
        inputs: {branch: "{{ event.payload.branch }}"}
    work_pool: agentflow

They become the workflow's deployment in prefect.yaml (`agentflow deploy`); Prefect's server
keeps the schedules and turns a matching event into a run. A trigger's inputs are templates
the Prefect server renders from the event: like every input, untrusted values.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from agentflow.flows.language.durations import Duration

DEFAULT_WORK_POOL = "agentflow"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Schedule(_Model):
    """One of cron, interval or rrule; inputs for the runs it makes (over the defaults)."""

    cron: str | None = None
    interval: Duration | None = None
    rrule: str | None = None
    timezone: str | None = Field(default=None, description="An IANA time zone, e.g. Europe/Berlin (default UTC).")
    active: bool = True
    inputs: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_kind(self) -> "Schedule":
        kinds = [name for name in ("cron", "interval", "rrule") if getattr(self, name) is not None]
        if len(kinds) != 1:
            raise ValueError("a schedule has exactly one of cron, interval or rrule "
                             f"(this one has {', '.join(kinds) or 'none'})")
        if self.interval is not None and self.interval < 1:
            raise ValueError("a schedule's interval is at least 1s")
        if self.cron is not None:
            _check_cron(self.cron)
        if self.rrule is not None:
            _check_rrule(self.rrule)
        if self.timezone is not None:
            _check_timezone(self.timezone)
        return self


class Trigger(_Model):
    """A run when an event happens: its name(s), the resource it must be about, the inputs."""

    event: Union[str, list[str]]
    match: dict[str, Union[str, list[str]]] = Field(default_factory=dict)
    match_related: dict[str, Union[str, list[str]]] = Field(default_factory=dict)
    inputs: dict[str, Any] = Field(default_factory=dict)
    enabled: bool = True

    @field_validator("event")
    @classmethod
    def _named(cls, value: Union[str, list[str]]) -> Union[str, list[str]]:
        names = [value] if isinstance(value, str) else value
        if not names or not all(isinstance(n, str) and n.strip() for n in names):
            raise ValueError("name the event(s), e.g. event: repo.pushed")
        return value

    def events(self) -> list[str]:
        return [self.event] if isinstance(self.event, str) else list(self.event)


def _check_cron(text: str) -> None:
    from cronsim import CronSim, CronSimError  # what Prefect's own cron schedules are checked with

    try:
        CronSim(text, datetime.now())
    except CronSimError:
        raise ValueError(f"cron {text!r} is not a cron expression; write five fields, e.g. \"0 6 * * 1-5\"") from None


def _check_rrule(text: str) -> None:
    from dateutil.rrule import rrulestr

    try:
        rrulestr(text)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"rrule {text!r} is not an RFC 5545 rule ({exc}); e.g. FREQ=WEEKLY;BYDAY=MO") from None


def _check_timezone(name: str) -> None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"timezone {name!r} is not an IANA time zone name; e.g. Europe/Berlin or UTC") from None
