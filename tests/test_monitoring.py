"""monitoring/ (the Grafana dashboard, the Prometheus alert rules and scrape config) against what
`agentflow metrics serve` serves: every metric an expression names is one of `METRICS` with the
suffix its kind is served with, every label it filters or groups by is one of that metric's,
and every label value it compares with one the exporter can serve.

A PromQL expression is read by a small tokenizer, not by Prometheus's parser, so that the test
needs nothing but this repository; it is itself tested on handwritten expressions below. A
metric or label the tokenizer cannot place is reported, never skipped.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from agentflow.flows.observe.fold import CIRCUIT_STATES, METRICS, OUTCOMES, SKIP_REASONS, TERMINAL_STATES, Metric, Totals
from agentflow.flows.observe.source import IN_FLIGHT

pytestmark = pytest.mark.unit  # reads files and serves from memory: no Prefect server

MONITORING = Path(__file__).resolve().parent.parent / "monitoring"
DASHBOARD = MONITORING / "grafana" / "agentflow-dashboard.json"
ALERTS = MONITORING / "prometheus" / "alerts.yml"
SCRAPE = MONITORING / "prometheus" / "prometheus.yml"
DATASOURCE = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}


# ---- what the exporter serves ---------------------------------------------------------------

SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}
# Labels Prometheus adds to every series it scrapes, and the histogram's bucket bound.
TARGET_LABELS = {"job", "instance"}
UP = Metric("up", "gauge", "Prometheus's own: 1 if the latest scrape of the target succeeded", ())


def served_series() -> dict[str, Metric]:
    """Each series name the exporter serves, with the metric it belongs to; and `up`."""
    names = {m.name + suffix: m for m in METRICS.values() for suffix in SUFFIXES[m.kind]}
    return {**names, "up": UP}


SERVED = served_series()

# Label values the exporter can serve, where they are a closed set. The outcomes are the step
# events' (engine/announce.py), the circuit states the exporter's (observe/exporter.py).
VALUES = {
    ("agentflow_workflow_runs", "state"): {s.lower() for s in TERMINAL_STATES},
    ("agentflow_workflow_runs_in_flight", "state"): {s.lower() for s in IN_FLIGHT},
    ("agentflow_circuit_state", "state"): set(CIRCUIT_STATES),
    ("agentflow_step_runs", "outcome"): set(OUTCOMES),
    ("agentflow_skips", "reason"): set(SKIP_REASONS),
}


# ---- a pragmatic PromQL reader ----------------------------------------------------------------

AGGREGATIONS = {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk",
                "topk", "quantile", "limitk", "limit_ratio"}
FUNCTIONS = {
    "abs", "absent", "absent_over_time", "acos", "acosh", "asin", "asinh", "atan", "atanh", "avg_over_time",
    "ceil", "changes", "clamp", "clamp_max", "clamp_min", "cos", "cosh", "count_over_time", "day_of_month",
    "day_of_week", "day_of_year", "days_in_month", "deg", "delta", "deriv", "exp", "floor",
    "histogram_avg", "histogram_count", "histogram_fraction", "histogram_quantile", "histogram_stddev",
    "histogram_stdvar", "histogram_sum", "holt_winters", "double_exponential_smoothing", "hour", "idelta",
    "increase", "irate", "label_join", "label_replace", "last_over_time", "ln", "log10", "log2",
    "mad_over_time", "max_over_time", "min_over_time", "minute", "month", "pi", "predict_linear",
    "present_over_time", "quantile_over_time", "rad", "rate", "resets", "round", "scalar", "sgn", "sin",
    "sinh", "sort", "sort_by_label", "sort_by_label_desc", "sort_desc", "sqrt", "stddev_over_time",
    "stdvar_over_time", "sum_over_time", "tan", "tanh", "time", "timestamp", "vector", "year",
    "start", "end",  # of the `@` modifier
}
GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}
OPERATOR_WORDS = {"and", "or", "unless", "bool", "offset", "atan2"}
NUMBER_WORDS = {"inf", "nan"}

_TOKEN = re.compile(r"""
    (?P<space>\s+|\#[^\n]*)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<variable>\$\{[^}]*\}|\$\w+|\[\[\w+\]\])
  | (?P<number>0x[0-9a-fA-F]+|(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?(?:[a-zA-Z]+\d*)*)
  | (?P<name>[a-zA-Z_][a-zA-Z0-9_:]*)
  | (?P<op>=~|!~|!=|==|>=|<=|[-+*/%^<>=,(){}\[\]:@])
""", re.VERBOSE)


@dataclass
class Selector:
    metric: str | None
    matchers: list[tuple[str, str, str]]  # (label, operator, value as written, unquoted)


@dataclass
class Uses:
    """What one expression names: series selectors, labels grouped on, aggregations."""

    selectors: list[Selector] = field(default_factory=list)
    grouping: list[tuple[str, str]] = field(default_factory=list)  # (keyword, label)
    aggregations: list[str] = field(default_factory=list)
    variables: set[str] = field(default_factory=set)

    @property
    def metrics(self) -> set[str]:
        return {s.metric for s in self.selectors if s.metric}


def tokens(expr: str) -> list[tuple[str, str]]:
    """(kind, text) of each token but spaces and comments; ValueError at a character PromQL has not."""
    out, at = [], 0
    while at < len(expr):
        match = _TOKEN.match(expr, at)
        if not match:
            raise ValueError(f"cannot read {expr[at:at + 20]!r} in {expr!r}")
        if match.lastgroup != "space":
            out.append((match.lastgroup, match.group()))
        at = match.end()
    return out


def _unquote(text: str) -> str:
    return text[1:-1]


def _variable_name(text: str) -> str:
    return text.strip("$[]{}").split(":")[0]


def read(expr: str) -> Uses:
    """The selectors, grouping labels and Grafana variables of a PromQL expression."""
    toks, uses, i = tokens(expr), Uses(), 0
    uses.variables = {_variable_name(text) for kind, text in toks if kind == "variable"}
    uses.variables |= {_variable_name(v) for kind, text in toks if kind == "string"
                       for v in re.findall(r"\$\{[^}]*\}|\$\w+|\[\[\w+\]\]", text)}

    def at(k: int) -> tuple[str, str]:
        return toks[k] if k < len(toks) else ("end", "")

    def matchers(k: int) -> tuple[list[tuple[str, str, str]], int]:
        """The matchers of `{...}` opening at k; and the index after its `}`."""
        found, k = [], k + 1
        while at(k) != ("op", "}"):
            (lkind, label), (okind, op), (vkind, value) = at(k), at(k + 1), at(k + 2)
            if lkind not in ("name", "string") or okind != "op" or op not in ("=", "!=", "=~", "!~") \
                    or vkind != "string":
                raise ValueError(f"cannot read the matchers of {expr!r} at {label!r}")
            found.append((_unquote(label) if lkind == "string" else label, op, _unquote(value)))
            k += 3
            if at(k) == ("op", ","):
                k += 1
            elif at(k) != ("op", "}"):
                raise ValueError(f"cannot read the matchers of {expr!r}: no closing brace")
        return found, k + 1

    while i < len(toks):
        kind, text = toks[i]
        if (kind, text) == ("op", "["):  # a range or subquery: durations and variables only
            while at(i) != ("op", "]"):
                if at(i)[0] == "end":
                    raise ValueError(f"no ] in {expr!r}")
                i += 1
            i += 1
        elif (kind, text) == ("op", "{"):  # a selector with no metric name
            found, i = matchers(i)
            uses.selectors.append(Selector(None, found))
        elif kind == "name":
            word, after = text.lower(), at(i + 1)
            if word in GROUPING:
                i += 1
                if at(i) == ("op", "("):
                    i += 1
                    while at(i) != ("op", ")"):
                        if at(i)[0] == "name":
                            uses.grouping.append((word, at(i)[1]))
                        elif at(i) != ("op", ","):
                            raise ValueError(f"cannot read the labels after {word} in {expr!r}")
                        i += 1
                    i += 1
            elif word in OPERATOR_WORDS or word in NUMBER_WORDS:
                i += 1
            elif word in AGGREGATIONS and (after == ("op", "(") or after[1].lower() in ("by", "without")):
                uses.aggregations.append(word)
                i += 1
            elif after == ("op", "("):
                if text not in FUNCTIONS:
                    raise ValueError(f"{text}() is not a PromQL function (in {expr!r})")
                i += 1
            elif after == ("op", "{"):
                found, i = matchers(i + 1)
                uses.selectors.append(Selector(text, found))
            else:
                uses.selectors.append(Selector(text, []))
                i += 1
        else:
            i += 1
    return uses


def problems(expr: str) -> list[str]:
    """What in `expr` the exporter does not serve: metric names, labels, label values. [] if none."""
    try:
        uses = read(expr)
    except ValueError as exc:
        return [str(exc)]
    found = []
    # Any agentflow_ name, even one the reader did not take for a metric (in a string, say).
    for name in re.findall(r"agentflow_[a-z0-9_]+", expr):
        if name not in SERVED:
            found.append(f"{name} is not served (of METRICS, or with the wrong suffix for its kind)")
    if not uses.selectors:
        found.append(f"no metric in {expr!r}")
    labels_here = set(TARGET_LABELS)
    for selector in uses.selectors:
        if selector.metric is None:
            found.append(f"a selector with no metric name in {expr!r}: the test cannot check it")
            continue
        metric = SERVED.get(selector.metric)
        if metric is None:
            if not selector.metric.startswith("agentflow_"):
                found.append(f"{selector.metric} is not served by the exporter")
            continue
        allowed = set(metric.labels) | TARGET_LABELS | ({"le"} if selector.metric.endswith("_bucket") else set())
        labels_here |= allowed
        for label, op, value in selector.matchers:
            if label not in allowed:
                found.append(f"{selector.metric} has no label {label!r}")
                continue
            known = VALUES.get((metric.name, label))
            if known is None or "$" in value:
                continue
            if op in ("=", "!="):
                wanted = {value}
            elif re.fullmatch(r"[A-Za-z0-9_]+(\|[A-Za-z0-9_]+)*", value):  # a plain alternation
                wanted = set(value.split("|"))
            else:
                continue
            for v in sorted(wanted - known):
                found.append(f"{selector.metric}{{{label}}} is never {v!r} (it is one of {sorted(known)})")
    for keyword, label in uses.grouping:
        if label not in labels_here:
            found.append(f"{keyword} ({label}): no metric of {expr!r} has the label {label!r}")
    return found


def result_labels(expr: str) -> set[str]:
    """The labels an alert's series carry, roughly: those of its `by (...)` if it aggregates with
    one, none if it aggregates without, else its metrics' and the target's."""
    uses = read(expr)
    by = {label for keyword, label in uses.grouping if keyword == "by"}
    if by:
        return by
    if uses.aggregations:
        return set()
    return set(TARGET_LABELS).union(*(SERVED[m].labels for m in uses.metrics if m in SERVED))


def variable_query(query: str) -> tuple[str | None, str | None]:
    """A Grafana Prometheus variable query: (the PromQL in it, the label it lists)."""
    match = re.fullmatch(r"\s*label_values\((.*)\)\s*", query, re.DOTALL)
    if match:
        inside = match.group(1)
        if "," in inside:
            expr, label = inside.rsplit(",", 1)
            return expr.strip(), label.strip()
        return None, inside.strip()
    match = re.fullmatch(r"\s*query_result\((.*)\)\s*", query, re.DOTALL)
    if match:
        return match.group(1), None
    raise ValueError(f"a variable query the test cannot check: {query!r}")


# ---- the reader, on expressions written by hand ------------------------------------------------

@pytest.mark.parametrize("expr, metrics, grouping", [
    ('sum by (workflow, state) (rate(agentflow_workflow_runs_total{workflow=~"$workflow"}[$__rate_interval]))',
     {"agentflow_workflow_runs_total"}, [("by", "workflow"), ("by", "state")]),
    ("histogram_quantile(0.95, sum by (le, agent) (rate(agentflow_step_duration_seconds_bucket[5m])))",
     {"agentflow_step_duration_seconds_bucket"}, [("by", "le"), ("by", "agent")]),
    ("sum(rate(agentflow_cache_hits_total[5m])) BY (workflow) / ignoring (step) agentflow_cache_misses_total",
     {"agentflow_cache_hits_total", "agentflow_cache_misses_total"}, [("by", "workflow"), ("ignoring", "step")]),
    ('count(agentflow_circuit_state{state="open"} == 1) or vector(0)', {"agentflow_circuit_state"}, []),
    ('label_replace(agentflow_exporter_refresh_ok, "sum", "rate", "by", "(.*)") > bool 0',
     {"agentflow_exporter_refresh_ok"}, []),
    ("rate(agentflow_exporter_events_total[1h:5m] offset 1d) * 1e3 + inf", {"agentflow_exporter_events_total"}, []),
    ('a_b:c{x="1",} / on (x) group_left (y) up', {"a_b:c", "up"}, [("on", "x"), ("group_left", "y")]),
])
def test_reader_finds_metrics_and_grouping_labels(expr, metrics, grouping):
    """The reader takes metric names and grouping labels, not functions, keywords, strings or ranges."""
    uses = read(expr)
    assert uses.metrics == metrics
    assert uses.grouping == grouping


def test_reader_finds_matchers_and_variables():
    """Matchers keep their label, operator and unquoted value; Grafana variables are collected."""
    uses = read('sum by (agent) (agentflow_step_runs_total{workflow=~"$workflow", outcome!="failed"}[${__range}])')
    assert uses.selectors[0].matchers == [("workflow", "=~", "$workflow"), ("outcome", "!=", "failed")]
    assert uses.variables == {"workflow", "__range"}
    assert uses.aggregations == ["sum"]


@pytest.mark.parametrize("expr, complaint", [
    ("rate(agentflow_step_runz_total[5m])", "agentflow_step_runz_total is not served"),
    ("sum(agentflow_step_runs)", "agentflow_step_runs is not served"),  # a counter without _total
    ("agentflow_circuit_state_total", "agentflow_circuit_state_total is not served"),  # a gauge with it
    ("rate(agentflow_step_duration_seconds[5m])", "agentflow_step_duration_seconds is not served"),
    ("agentflow_step_duration_seconds_created", "agentflow_step_duration_seconds_created is not served"),
    ('sum by (agent) (rate(agentflow_step_runs_total{outcome="failed"}[5m])) / node_cpu_seconds_total',
     "node_cpu_seconds_total is not served"),
    ('{__name__="agentflow_made_up"}', "agentflow_made_up is not served"),
    ('{__name__=~"agentflow_step_runs_total"}', "a selector with no metric name"),
    ("rat(agentflow_step_runs_total[5m])", "rat() is not a PromQL function"),
    ('agentflow_circuit_state{workflow="w"}', "agentflow_circuit_state has no label 'workflow'"),
    ('agentflow_step_runs_total{le="5"}', "agentflow_step_runs_total has no label 'le'"),
    ("sum by (outcome) (rate(agentflow_cache_hits_total[5m]))", "by (outcome): no metric"),
    ('agentflow_circuit_state{state="opened"} == 1', "agentflow_circuit_state{state} is never 'opened'"),
    ('agentflow_workflow_runs_total{state=~"failed|crashd"}', "agentflow_workflow_runs_total{state} is never 'crashd'"),
    ('agentflow_workflow_runs_in_flight{state="completed"}', "is never 'completed'"),
    ('agentflow_step_runs_total{outcome="error"}', "is never 'error'"),
    ("sum(rate(agentflow_step_runs_total[5m]) !", "cannot read"),
    ("1 + 1", "no metric"),
])
def test_checker_rejects(expr, complaint):
    """An expression with a metric, function, label or value the exporter has not is reported."""
    assert any(complaint in p for p in problems(expr)), problems(expr)


def test_checker_accepts_every_served_series():
    """Each served series name, alone and with its own labels, passes: the checker is not too strict."""
    for name, metric in SERVED.items():
        labels = [*metric.labels, "le"] if name.endswith("_bucket") else list(metric.labels)
        matchers = ", ".join(f'{label}=~".+"' for label in labels)
        grouping = ", ".join(labels) or "job"
        assert problems(f"sum by ({grouping}) ({name}{{{matchers}}})") == []


def test_served_names_are_what_the_exporter_renders(tmp_path):
    """`served_series` is the exporter's own /metrics rendering: a series of every metric in it."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from agentflow.flows.observe.exporter import Collector, Figures

    figures = Figures(tmp_path / "state.json")
    totals = Totals()
    for metric in METRICS.values():
        if metric.kind == "counter":
            totals.add(metric.name, tuple("x" for _ in metric.labels))
    totals.fold({"event": "agentflow.step.completed", "payload": {
        "workflow": "w", "step": "s", "agent": "a", "duration_s": 1.5}})
    figures.totals = totals
    figures.in_flight, figures.circuits = {("w", "running"): 1}, {"a": "open"}
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Collector(figures))
    rendered = {sample.name for family in text_string_to_metric_families(generate_latest(registry).decode())
                for sample in family.samples}
    assert rendered == set(SERVED) - {"up"}


# ---- the dashboard --------------------------------------------------------------------------

def _dashboard() -> dict:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def _panels(panels: list[dict]):
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels") or [])


def _dashboard_exprs() -> list[tuple[str, str]]:
    """(where, PromQL) of every panel target, and of every variable query."""
    board, found = _dashboard(), []
    for panel in _panels(board["panels"]):
        for target in panel.get("targets") or []:
            found.append((f"panel {panel.get('id')} {panel.get('title')!r} {target.get('refId')}", target["expr"]))
    for variable in board["templating"]["list"]:
        query = variable.get("query")
        texts = [query.get("query") if isinstance(query, dict) else query, variable.get("definition")]
        for text in filter(None, texts):
            expr, _ = variable_query(text)
            if expr:
                found.append((f"variable {variable['name']}", expr))
    return found


def _alert_rules() -> list[dict]:
    return [rule for group in yaml.safe_load(ALERTS.read_text(encoding="utf-8"))["groups"] for rule in group["rules"]]


def _all_exprs() -> list[tuple[str, str]]:
    return _dashboard_exprs() + [(f"alert {rule['alert']}", rule["expr"]) for rule in _alert_rules()]


def test_every_expression_uses_only_served_metrics_and_labels():
    """Every dashboard and alert expression names only served series, their labels and their values."""
    exprs = _all_exprs()
    assert len(exprs) > 30  # the walk found the nested rows' panels and the variables too
    found = {where: problems(expr) for where, expr in exprs}
    assert {where: p for where, p in found.items() if p} == {}


def test_a_made_up_name_in_any_expression_is_caught():
    """Each real expression, with one served name changed to one not served, fails the check."""
    for where, expr in _all_exprs():
        names = [m for m in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr) if m in SERVED]
        assert names, where
        for name in set(names):
            for wrong in (name.replace("agentflow_", "agentflow_made_up_", 1) if name != "up" else "upp",
                          name.removesuffix("_total") if name.endswith("_total") else name + "_total"):
                broken = re.sub(rf"(?<![\w:]){re.escape(name)}(?![\w:])", wrong, expr, count=1)
                assert broken != expr
                assert problems(broken), f"{where}: {broken}"


def test_dashboard_imports_with_a_prometheus_datasource():
    """__inputs asks for DS_PROMETHEUS, of type prometheus, and every panel and target uses it."""
    board = _dashboard()
    assert {"name": "DS_PROMETHEUS", "type": "datasource", "pluginId": "prometheus"}.items() <= \
        next(i for i in board["__inputs"] if i["name"] == "DS_PROMETHEUS").items()
    assert board["schemaVersion"] >= 39 and board["id"] is None and board["uid"]
    checked = 0
    for panel in _panels(board["panels"]):
        if panel["type"] == "row":
            continue
        assert panel.get("datasource") == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target.get("datasource", DATASOURCE) == DATASOURCE, panel["title"]
            assert target["expr"].strip() and target["refId"], panel["title"]
        checked += 1
    assert checked >= 20


def test_dashboard_panel_ids_are_unique_and_panels_fit_the_grid():
    """No two panels (rows and their nested panels included) share an id; each fits 24 columns."""
    ids = [panel["id"] for panel in _panels(_dashboard()["panels"])]
    assert len(ids) == len(set(ids))
    for panel in _panels(_dashboard()["panels"]):
        pos = panel["gridPos"]
        assert 0 <= pos["x"] and pos["x"] + pos["w"] <= 24 and pos["h"] > 0, panel["title"]


def test_dashboard_variables_and_their_uses():
    """workflow and agent are multi-select label_values variables, All `.*`; each `$x` used is defined."""
    variables = {v["name"]: v for v in _dashboard()["templating"]["list"]}
    assert {"workflow", "agent"} <= set(variables)
    for name in ("workflow", "agent"):
        v = variables[name]
        assert v["type"] == "query" and v["multi"] and v["includeAll"], name
        # All as `.*`, not Grafana's list of the values found: steps with a shell `run:` have
        # agent="" and fallback-only agents are in no step's label, and both must still count.
        assert v["allValue"] == ".*", name
        assert v["datasource"] == DATASOURCE, name
        expr, label = variable_query(v["definition"])
        assert label == name and expr and not problems(expr), v["definition"]
        assert name in SERVED[read(expr).metrics.pop()].labels
    builtins = {"__rate_interval", "__interval", "__range", "__range_s"}
    for where, expr in _dashboard_exprs():
        assert read(expr).variables <= set(variables) | builtins, where


# ---- the alert rules and the scrape config -----------------------------------------------------

def test_alert_rules_are_complete():
    """Each rule has alert, expr, severity and summary; the six alerts of the README are there."""
    data = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    assert data["groups"] and all(group["name"] and group["rules"] for group in data["groups"])
    rules = _alert_rules()
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names))
    assert set(names) == {"AgentflowHighErrorRate", "AgentflowWorkflowRunsFailing", "AgentflowCircuitOpen",
                          "AgentflowCostOverBudget", "AgentflowExporterCannotReadPrefect", "AgentflowExporterDown"}
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"}, rule["alert"]
        assert isinstance(rule["expr"], str) and rule["expr"].strip(), rule["alert"]
        assert rule["labels"]["severity"] in ("critical", "warning", "info"), rule["alert"]
        assert rule["annotations"]["summary"].strip(), rule["alert"]
        if "for" in rule:
            assert re.fullmatch(r"(\d+[smhdwy])+", str(rule["for"])), rule["alert"]


def test_alert_annotations_name_labels_the_alert_has():
    """A `$labels.x` in an annotation is a label the rule's series keep (else it renders empty)."""
    for rule in _alert_rules():
        keep = result_labels(rule["expr"])
        for text in rule["annotations"].values():
            for label in re.findall(r"\$labels\.(\w+)", text):
                assert label in keep, f"{rule['alert']}: $labels.{label} is not one of {sorted(keep)}"


def test_scrape_config_matches_the_rules():
    """prometheus.yml scrapes job agentflow (which `up{job=...}` names) and loads alerts.yml."""
    config = yaml.safe_load(SCRAPE.read_text(encoding="utf-8"))
    assert config["rule_files"] == ["alerts.yml"] and (SCRAPE.parent / "alerts.yml").is_file()
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "agentflow")
    assert job["static_configs"][0]["targets"] == ["127.0.0.1:9090"]
    assert job["scrape_interval"] == "15s"
    jobs_named = {v for _, expr in _all_exprs() for s in read(expr).selectors for (label, _, v) in s.matchers
                  if label == "job"}
    assert jobs_named == {"agentflow"}
