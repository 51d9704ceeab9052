"""`run --record FILE` and `run --replay FILE`: a run's agent calls kept, or answered from a file."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import typer

from agentflow.errors import SpecError
from agentflow.printable import counted
from agentflow.flows.cli._app import EXIT_INVALID, err, print_problems


def replayer_for(path: Path, resolved: Any) -> Any:
    """The replayer answering from the recording in `path`; exit 2, saying why, if it cannot."""
    from agentflow.flows.language.answers import read_recording
    from agentflow.tasks.recording import Replayer

    try:
        recording = read_recording(path)
    except SpecError as exc:
        print_problems(exc, "; nothing was run.")
        raise typer.Exit(EXIT_INVALID) from None
    if recording.workflow != resolved.spec.name:
        err.print(f"{path} records a run of workflow {recording.workflow!r}, not {resolved.spec.name!r}: give the "
                  "recording of this workflow", markup=False)
        raise typer.Exit(EXIT_INVALID)
    return Replayer(recording, source=str(path))


@contextmanager
def answering(record: Path | None, replayer: Any, resolved: Any) -> Iterator[None]:
    """The run's agent calls recorded into `record` (written when the run ends, however it
    ends), or answered by `replayer`."""
    from agentflow.flows.language.answers import dump_recording
    from agentflow.tasks import recording

    recorder = recording.Recorder(resolved.spec.name, resolved.spec_hash) if record is not None else None
    tokens = (recording.RECORDING.set(recorder), recording.REPLAYING.set(replayer))
    try:
        yield
    finally:
        recording.REPLAYING.reset(tokens[1])
        recording.RECORDING.reset(tokens[0])
        if recorder is not None and record is not None:
            record.parent.mkdir(parents=True, exist_ok=True)
            record.write_text(dump_recording(recorder.recording), encoding="utf-8")
            kept = recorder.recording
            decided = f" and {counted(len(kept.decisions), 'decision')}" if kept.decisions else ""
            err.print(f"recorded {counted(len(kept.calls), 'agent call')}{decided} in {record}; a test case answers "
                      f"from it with `recording: {record.name}` (agentflow test --help)", markup=False)
