"""A failed job's message and fix, and the workflow's warnings, reach the terminal (job_messages)."""

from __future__ import annotations

import os

from workflow_scripts.core.job_messages import failure_message, report, warnings_of

BAD_INPUT_LOG = """2026-12-02 10:00:00,000 workflow_scripts.cli INFO process setting: x
ERROR (bad input) data/mine.h5ad: obs['cell_type']: only one class (alpha)
  fix: use another label column, or a subset with two or more classes
"""
WARNING_LOG = """2026-12-02 10:00:00,000 workflow_scripts.prepare.readers WARNING counts were recovered by inverting log1p
2026-12-02 10:00:01,000 anndata WARNING something a library says
2026-12-02 10:00:02,000 workflow_scripts.prepare.readers INFO wrote the h5ad
"""
RUN_LOG = ".snakemake/log/2026-12-02T100000.000000.snakemake.log"


def test_this_runs_failed_message_and_fix_and_warnings_are_reported(tmp_path):
    logs, run_log = tmp_path / "logs", tmp_path / RUN_LOG
    for path, text in [("check/mine.log", BAD_INPUT_LOG), ("prepare/mine.log", WARNING_LOG),
                       ("old/earlier.log", BAD_INPUT_LOG.replace("alpha", "beta"))]:
        (logs / path).parent.mkdir(parents=True, exist_ok=True)
        (logs / path).write_text(text)
    run_log.parent.mkdir(parents=True)
    run_log.touch()
    os.utime(logs / "old/earlier.log", (0, 0))  # written before this run began: not this run's
    text = report([str(run_log)], logs)
    assert f"failed ({logs / 'check/mine.log'}):\ndata/mine.h5ad: obs['cell_type']: only one class (alpha)\n" \
           "  fix: use another label column" in text
    assert f"warning ({logs / 'prepare/mine.log'}): counts were recovered by inverting log1p" in text
    assert "beta" not in text and "something a library says" not in text and "process setting" not in text


def test_a_traceback_shows_its_end_and_a_clean_log_nothing():
    log = "\n".join(f"line {index}" for index in range(40)) + "\nTraceback (most recent call last):\nRuntimeError: boom"
    assert failure_message(log).endswith("line 39\nTraceback (most recent call last):\nRuntimeError: boom")
    assert "line 10\n" not in failure_message(log)
    assert failure_message(WARNING_LOG) is None


def test_nothing_to_say_without_a_log(tmp_path):
    assert report(None, tmp_path) == "" and report(tmp_path / "missing.log", tmp_path) == ""
    assert warnings_of("2026-12-02 10:00:00,000 workflow_scripts.x INFO fine") == []
