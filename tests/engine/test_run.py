"""Running compiled workflows on a real Prefect server: patterns, data flow, retries, timeouts."""

from __future__ import annotations

import logging

import pytest
from procs import gone

from agentflow import WorkflowResult, build_flow, run_workflow
from agentflow.errors import InputError, WorkflowFailed
from agentflow.flows.language.loader import load_text


def flow_of(text: str):
    return build_flow(load_text(text, source="test.yaml"))


def test_flow_identity_and_parameters():
    """The flow is named after the workflow, versioned by its hash, and takes its inputs."""
    resolved = load_text("""
name: identity
inputs:
  feature: {type: string, default: VAT}
  rounds: {type: integer}
steps:
  - {id: a, call: "probe:echo", prompt: "{{ inputs.feature }} {{ inputs.rounds }}"}
""")
    flow = build_flow(resolved)
    assert flow.name == "identity"
    assert flow.version == resolved.spec_hash and len(resolved.spec_hash) == 16
    assert set(flow.parameters.properties) == {"feature", "rounds"}
    assert flow.parameters.required == ["rounds"]
    assert flow(rounds=3)["a"].summary == "VAT 3"


@pytest.mark.unit
def test_bad_inputs_fail_before_any_step(tmp_path):
    """A missing or mistyped input is a clear error and no step runs."""
    marker = tmp_path / "ran"
    flow = flow_of(f"""
name: inputs-check
inputs:
  count: {{type: integer}}
steps:
  - {{id: a, call: "probe:append", with: {{path: "{marker}", text: x}}}}
""")
    with pytest.raises(InputError, match="missing input `count`"):
        flow()
    with pytest.raises(InputError, match="must be integer"):
        flow(count="three")
    with pytest.raises(InputError, match="unknown input `cuont`; did you mean `count`"):
        flow(count=1, cuont=2)
    assert not marker.exists()


def test_parallel_steps_run_at_the_same_time():
    """Independent steps meet at a barrier: they can only finish if all three run at once."""
    result = flow_of("""
name: together
pattern: parallel
steps:
  - {id: a, call: "probe:meet", with: {name: together, parties: 3}}
  - {id: b, call: "probe:meet", with: {name: together, parties: 3}}
  - {id: c, call: "probe:meet", with: {name: together, parties: 3}}
""")()
    assert [result[s].status for s in "abc"] == ["success"] * 3


def test_for_each_items_are_parallel_task_runs():
    """Each for_each item is its own task run, all running at the same time."""
    result = flow_of("""
name: fanout
steps:
  - id: gateways
    for_each: [bKash, Nagad, NBR]
    call: "probe:meet"
    with: {name: fanout, parties: 3}
""")()
    items = result["gateways"].data["items"]
    assert [i["item"] for i in items] == ["bKash", "Nagad", "NBR"]
    assert result["gateways"].summary == "3/3 items succeeded"


def test_for_each_respects_max_parallel():
    """No more than the step's max_parallel items run at once."""
    result = flow_of("""
name: bounded
max_parallel: 10
steps:
  - id: many
    for_each: [1, 2, 3, 4, 5, 6, 7, 8]
    max_parallel: 2
    call: "probe:count_concurrency"
    with: {name: bounded, gate: none}
""")()
    peaks = [i["data"]["peak"] for i in result["many"].data["items"]]
    assert max(peaks) <= 2


def test_sequential_pipeline_and_when(tmp_path):
    """Outputs feed later prompts; a false `when` skips a step and dependents see `skipped`."""
    log = tmp_path / "log.txt"
    result = flow_of(f"""
name: pipeline
inputs:
  feature: {{default: VAT}}
steps:
  - id: first
    call: "probe:append"
    with: {{path: "{log}", text: "one {{{{ inputs.feature }}}}"}}
  - id: second
    call: "probe:echo"
    prompt: "after {{{{ steps.first.summary }}}} with {{{{ steps.first.metrics.lines }}}} line"
  - id: never
    when: "steps.first.status == 'failed'"
    call: "probe:append"
    with: {{path: "{log}", text: never}}
  - id: last
    call: "probe:echo"
    prompt: "never was {{{{ steps.never.status }}}}"
""")()
    assert result["first"].summary == "appended one VAT"
    assert result["second"].summary == "after appended one VAT with 1 line"
    assert result["never"].status == "skipped"
    assert result["last"].summary == "never was skipped"
    assert log.read_text() == "one VAT\n"


def test_repeat_until_met():
    """`repeat` runs iterations until the condition holds; the last result is the step's."""
    result = flow_of("""
name: iterate
steps:
  - id: profile
    call: "probe:measure"
    repeat: {until: "result.metrics.p95_ms < 300", max: 5}
""")()
    assert result["profile"].summary == "round 3"
    assert result["profile"].metrics["iterations"] == 3
    assert result["profile"].metrics["until_met"] is True


def test_repeat_stops_at_max():
    """Without the condition met, `repeat` stops after `max` rounds and says so."""
    result = flow_of("""
name: iterate-max
steps:
  - id: profile
    call: "probe:measure"
    with: {factor: 1.0}
    repeat: {until: "result.metrics.p95_ms < 300", max: 2}
""")()
    assert result["profile"].metrics == {"p95_ms": 1000.0, "iterations": 2, "until_met": False,
                                            "duration_ms": result["profile"].metrics["duration_ms"]}


def test_retries_until_success(tmp_path):
    """A failing step is retried and succeeds on the third call."""
    counter = tmp_path / "count"
    result = flow_of(f"""
name: retrying
steps:
  - id: flaky
    call: "probe:flaky"
    with: {{path: "{counter}", fail_times: 2}}
    retries: 3
    retry_backoff: {{base_seconds: 0, max_seconds: 0, jitter: 0}}
""")()
    assert result["flaky"].data["calls"] == 3
    assert counter.read_text() == "3"
    assert result.steps["flaky"].attempts == 3


def test_run_workflow_from_a_path_returns_the_workflow_result(tmp_path):
    """`run_workflow(path, inputs)`: every step's outcome, in definition order, with a run id."""
    path = tmp_path / "wf.yaml"
    path.write_text("""
name: by-path
inputs:
  who: {default: nobody}
steps:
  - {id: hello, run: [echo, "hello {{ inputs.who }}"]}
  - {id: later, when: "inputs.who == 'nobody'", run: [echo, never]}
""")
    result = run_workflow(path, {"who": "team"})
    assert isinstance(result, WorkflowResult)
    assert (result.workflow, result.status, result.failed_steps) == ("by-path", "completed", [])
    assert result.run_id and len(result.run_id) == 36
    assert list(result.steps) == ["hello", "later"]
    assert result["hello"].summary == "hello team"
    assert result.steps["later"].status == "skipped" and result.steps["hello"].attempts == 1
    assert WorkflowResult.model_validate_json(result.model_dump_json()) == result  # JSON all the way


def test_configuration_errors_are_not_retried(tmp_path):
    """A callable that cannot be imported fails once, without using its retries."""
    flow = flow_of("""
name: not-retried
steps:
  - id: broken
    call: "no_such_module_here:fn"
    retries: 3
""")
    with pytest.raises(WorkflowFailed) as caught:
        flow()
    assert "cannot import `no_such_module_here`" in caught.value.result["broken"].error


def test_failed_command_carries_stderr_and_stops_the_run(tmp_path):
    """A non-zero exit fails the step with stderr's tail; later steps do not run."""
    marker = tmp_path / "after"
    flow = flow_of(f"""
name: failing
steps:
  - id: bad
    run: [sh, -c, "echo partial; echo 'disk is full' >&2; exit 3"]
  - id: after
    run: [touch, "{marker}"]
""")
    with pytest.raises(WorkflowFailed) as caught:
        flow()
    bad = caught.value.result["bad"]
    assert bad.status == "failed"
    assert "exited with code 3: disk is full" in bad.error
    assert bad.output == "partial\n"
    assert caught.value.result.steps["after"].status == "not_run"
    assert caught.value.result.message == str(caught.value) == "workflow `failing` failed: step(s) bad failed"
    assert not marker.exists()


def test_low_criticality_failure_lets_the_run_go_on():
    """A failed step with criticality low does not stop the run; dependents see `failed`."""
    result = flow_of("""
name: tolerant
steps:
  - {id: optional, run: [sh, -c, "exit 1"], criticality: low}
  - {id: next, call: "probe:echo", prompt: "optional was {{ steps.optional.status }}"}
""")()
    assert result["next"].summary == "optional was failed"


def test_timeout_kills_the_process_group(tmp_path):
    """A timed-out command is killed with its children and reported as a timeout."""
    pid_file = tmp_path / "child.pid"
    flow = flow_of(f"""
name: slow
steps:
  - id: slow
    run: [sh, -c, "sleep 300 & echo $! > {pid_file}; wait"]
    timeout: 1s
""")
    with pytest.raises(WorkflowFailed) as caught:
        flow()
    assert "timed out after 1s" in caught.value.result["slow"].error
    assert gone(int(pid_file.read_text())), "the command's child outlived the timeout"


def test_a_hung_function_times_out_without_prefects_worker_thread_warning(caplog):
    """A `call` step's timeout is agentflow's: the step fails as timed out when it passes, and
    Prefect, not given a timeout it cannot enforce, logs no warning about it."""
    flow = flow_of("""
name: hung
steps:
  - {id: quick, call: "probe:echo", prompt: hi, timeout: 5s}
  - {id: stuck, call: "probe:hang", with: {seconds: 120}, timeout: 1s, depends_on: [quick]}
""")
    with caplog.at_level(logging.WARNING), pytest.raises(WorkflowFailed) as caught:
        flow()
    stuck = caught.value.result["stuck"]
    assert stuck.status == "failed" and "probe:hang timed out after 1s" in stuck.error
    assert caught.value.result["quick"].summary == "hi"
    assert not [r for r in caplog.records if "Timeout" in r.getMessage() and "worker thread" in r.getMessage()]


def test_assert_step_fails_with_its_message():
    """An assert step whose condition is false fails the workflow with its message."""
    flow = flow_of("""
name: asserting
inputs:
  limit: {type: integer, default: 5}
steps:
  - {id: count, call: "probe:echo", prompt: "x"}
  - {id: check, assert: "inputs.limit > 10", message: "limit must exceed 10"}
""")
    with pytest.raises(WorkflowFailed) as caught:
        flow()
    assert "limit must exceed 10" in caught.value.result["check"].error


def test_an_assert_renders_its_message_and_one_that_holds_says_what_held():
    flow = flow_of("""
name: asserting
inputs:
  limit: {type: integer, default: 5}
steps:
  - {id: holds, assert: "inputs.limit > 1", message: "limit {{ inputs.limit }} is too low"}
  - {id: check, assert: "inputs.limit > 10", message: "limit {{ inputs.limit }} must exceed 10"}
""")
    with pytest.raises(WorkflowFailed) as caught:
        flow()
    assert caught.value.result["holds"].summary == "holds: `inputs.limit > 1`"
    assert "limit 5 must exceed 10" in caught.value.result["check"].error


def test_a_function_returning_what_cannot_be_a_result_fails_its_step_once_saying_what_to_return():
    flow = flow_of("""
name: returns
pattern: parallel
defaults: {retries: 2, criticality: low}
steps:
  - {id: a_set, call: "probe:wrong", with: {kind: set}}
  - {id: bad_status, call: "probe:wrong", with: {kind: status}}
""")
    result = flow()
    assert "probe:wrong returned set, which is not a step result (Object of type set is not JSON serializable)" in (
        result["a_set"].error)
    assert "returned dict, which is not a step result (status: " in result["bad_status"].error
    assert "return a string, a JSON value" in result["bad_status"].error
    assert result.steps["a_set"].attempts == result.steps["bad_status"].attempts == 1  # not retried


def test_shell_and_python_agents(tmp_path):
    """Agents of kind shell and python, defined inline, use the same machinery."""
    result = flow_of("""
name: agents
agents:
  shouter: {kind: shell, command: [tr, a-z, A-Z]}
  echoer: {kind: python, callable: "probe:echo"}
steps:
  - {id: loud, agent: shouter, prompt: "hello"}
  - {id: quiet, agent: echoer, prompt: "{{ steps.loud.summary }}"}
""")()
    assert result["loud"].summary == "HELLO"
    assert result["quiet"].summary == "HELLO"


def test_run_workflow_takes_a_secret_from_the_environment(tmp_path, monkeypatch):
    """A secret input not given is read from AGENTFLOW_SECRET_<NAME>; its value reaches the
    step and leaves no trace in the result."""
    path = tmp_path / "wf.yaml"
    path.write_text("""
name: env-secret
inputs:
  token: {secret: true}
steps:
  - {id: use, call: "probe:echo", prompt: "token {{ inputs.token }}"}
""")
    with pytest.raises(InputError, match="or set AGENTFLOW_SECRET_TOKEN"):
        run_workflow(path)
    monkeypatch.setenv("AGENTFLOW_SECRET_TOKEN", "s3cr3t-value")
    result = run_workflow(path)
    assert result["use"].data["prompt"] == "token [secret]"
