"""What jobs said, on the terminal: a failed job's bad-input message with its fix, and the warnings of
this run's jobs that change results (e.g. counts recovered by inverting log1p).

Every job writes to its own log under logs/, so with the plain `snakemake --cores 2` a user would
otherwise see only "exit status 2" and a log path. The Snakefile's onsuccess / onerror handlers call
`show_job_messages` with Snakemake's log of the run, whose name is the time the run started: the job
logs written since then are this run's.
"""

from __future__ import annotations

import re
import sys
from datetime import datetime
from pathlib import Path

BAD_INPUT = "ERROR (bad input) "
TRACEBACK = "Traceback (most recent call last):"
WARNING = re.compile(r"^\S+ \S+ (workflow_scripts\S*) WARNING (.*)$")
RUN_STARTED = re.compile(r"^(\d{4}-\d\d-\d\dT\d{6}\.\d+)\.snakemake\.log$")  # Snakemake's log file name
TAIL_LINES = 15  # of a failed job's traceback


def failure_message(job_log: str) -> str | None:
    """The bad-input message with its fix lines, or the end of a traceback; None for a job that did
    not fail this way."""
    lines = job_log.splitlines()
    for index, line in enumerate(lines):
        if line.startswith(BAD_INPUT):
            fix = [following for following in lines[index + 1:] if following.startswith("  ")]
            return "\n".join([line.removeprefix(BAD_INPUT), *fix])
    return "\n".join(lines[-TAIL_LINES:]) if TRACEBACK in job_log else None


def warnings_of(job_log: str) -> list[str]:
    """The warnings the workflow's own code logged (not those of the libraries it uses)."""
    return [match[2] for line in job_log.splitlines() if (match := WARNING.match(line))]


def run_started(snakemake_log: Path) -> float:
    """When the run began: the time in its log file's name (the file's own change time otherwise)."""
    match = RUN_STARTED.match(snakemake_log.name)
    return datetime.strptime(match[1], "%Y-%m-%dT%H%M%S.%f").timestamp() if match else snakemake_log.stat().st_ctime


def report(snakemake_logs: str | Path | list | None, logs_dir: str | Path = "logs") -> str:
    """This run's failed jobs' messages, then its warnings, one block per job log ('' when there are
    none). `snakemake_logs`: the handlers' `log`, Snakemake's log file(s) of the run."""
    paths = [Path(path) for path in (snakemake_logs if isinstance(snakemake_logs, (list, tuple))
                                     else [snakemake_logs]) if path and Path(path).is_file()]
    if not paths or not Path(logs_dir).is_dir():
        return ""
    since = min(run_started(path) for path in paths)
    job_logs = sorted(path for path in Path(logs_dir).rglob("*.log") if path.stat().st_mtime >= since)
    texts = {path: path.read_text(errors="replace") for path in job_logs}
    failures = [f"failed ({path}):\n{message}" for path, text in texts.items()
                if (message := failure_message(text)) is not None]
    warnings = [f"warning ({path}): {warning}" for path, text in texts.items() for warning in warnings_of(text)]
    return "\n\n".join(failures + warnings)


def show_job_messages(snakemake_logs: str | Path | list | None) -> None:
    """Print `report` to the terminal (stderr), when there is anything to say."""
    text = report(snakemake_logs)
    if text:
        print(f"\nWhat the jobs said (their logs hold the rest):\n{text}", file=sys.stderr)
