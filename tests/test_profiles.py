"""Cluster execution: what each job would ask SLURM for, from config, without a cluster (dry runs)."""

from __future__ import annotations

import re

import yaml
from conftest import DEFAULT_CONFIG_PATH, REPO, place_paper_files_by_hand, snakemake

from workflow_scripts.core.config import load_config
from workflow_scripts.sweep.wiring import add_size_experiments

RESOURCES = re.compile(r"^rule (\w+):$|^\s+resources: (.*)$", re.MULTILINE)


def requested_resources(dry_run_output: str) -> dict[str, list[dict[str, str]]]:
    """rule -> the resources line of each of its jobs, as {name: value}."""
    jobs: dict[str, list[dict[str, str]]] = {}
    rule = None
    for match in RESOURCES.finditer(dry_run_output):
        if match.group(1):
            rule = match.group(1)
        elif rule:
            pairs = (item.split("=", 1) for item in match.group(2).split(", "))
            jobs.setdefault(rule, []).append(dict(pairs))
            rule = None
    return jobs


def test_slurm_profile_requests_gpus_memory_and_time_from_config(workdir):
    place_paper_files_by_hand(workdir)
    cluster = {"resources": {"finetune": {"gpu": 2, "gpu_model": "h100", "cpus_per_gpu": 8, "mem_mb": 64000,
                                          "runtime": 120},
                             "quantize": {"gpu": 1, "mem_mb": 16000, "runtime": 30}}}
    (workdir / "cluster.yaml").write_text(yaml.safe_dump(cluster))
    result = snakemake(workdir, "-n", "-p", "--profile", "profiles/slurm", "--configfile", "config/paper.yaml",
                       "cluster.yaml")
    assert result.returncode == 0, result.stderr
    # GPU jobs start through the launcher that claims their devices (one process per GPU under torchrun)
    config = load_config(DEFAULT_CONFIG_PATH, REPO / "config/paper.yaml")
    add_size_experiments(config)
    n_finetune_runs = sum(experiment["n_folds"] for experiment in config["experiments"].values()
                          for method in experiment["methods"].values() if method["kind"] == "finetune")
    assert n_finetune_runs > 80  # every experiment of the paper preset, the training-size sweep included
    assert result.stdout.count("python -m workflow_scripts.core.devices --gpus 2 -- finetune") == n_finetune_runs
    jobs = requested_resources(result.stdout)
    assert len(jobs["finetune_fold"]) == n_finetune_runs
    for job in jobs["finetune_fold"]:
        assert (job["gpu"], job["gpu_model"], job["cpus_per_gpu"]) == ("2", "h100", "8")
        assert (job["mem_mb"], job["runtime"]) == ("64000", "120")
    assert [(job["gpu"], job["mem_mb"]) for job in jobs["quantize_model"]] == [("1", "16000")]
    for rule in ("baseline_fold", "download_file", "tokenize"):
        assert all("gpu" not in job for job in jobs[rule]), rule  # CPU jobs ask for no GPU


def test_local_profile_limits_gpu_jobs_with_resources(workdir):
    (workdir / "gpu.yaml").write_text(yaml.safe_dump({"resources": {"finetune": {"gpu": 1}}}))
    result = snakemake(workdir, "-n", "--profile", "profiles/local", "--resources", "gpu=1",
                       "--configfile", "config/test.yaml", "gpu.yaml")
    assert result.returncode == 0, result.stderr
    jobs = requested_resources(result.stdout)
    assert jobs["finetune_fold"] and all(job["gpu"] == "1" for job in jobs["finetune_fold"])


def test_a_retried_job_asks_for_more_memory(workdir):
    """A job failing its first attempt is retried (the SLURM profile's retries) with mem_mb x attempt."""
    assert yaml.safe_load((workdir / "profiles/slurm/profile.yaml").read_text())["retries"] >= 1
    (workdir / "memory.yaml").write_text(yaml.safe_dump({"resources": {"finetune": {"mem_mb": 3000}}}))
    (workdir / "probe.smk").write_text(
        'configfile: "config/config.yaml"\n'
        'include: "rules/common.smk"\n'
        "rule probe:\n"
        '    output: "probe.txt"\n'
        '    resources: **WORKFLOW.job_resources("finetune")\n'
        # fails on its first attempt: the log of attempts has one line then
        '    shell: "echo {resources.mem_mb} >> attempts.txt && test $(wc -l < attempts.txt) = 2 && touch {output}"\n'
    )
    result = snakemake(workdir, "probe.txt", "-s", "probe.smk", "--profile", "profiles/local", "--retries", "1",
                       "--configfile", "memory.yaml")
    assert result.returncode == 0, result.stderr
    assert (workdir / "attempts.txt").read_text().split() == ["3000", "6000"]
