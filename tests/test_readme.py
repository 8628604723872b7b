"""Every snakemake command the README shows plans what it says, as a dry run in a copy of the workflow."""

from __future__ import annotations

import re
import shlex

import pytest
from conftest import REPO, copy_workflow, place_paper_files_by_hand, snakemake

README = (REPO / "README.md").read_text()
BASH_BLOCKS = re.findall(r"```bash\n(.*?)```", README, re.S)
COMMANDS = [line.split("#")[0].strip() for block in BASH_BLOCKS for line in block.splitlines()
            if line.startswith("snakemake ")]
MY_DATA = re.search(r"```yaml\n# my_data.yaml\n(.*?)```", README, re.S)[1]
MY_CHECKPOINT = re.search(r"checkpoint: (\S+)\}", MY_DATA)[1]


def test_the_readme_shows_commands():
    assert len(COMMANDS) >= 6 and MY_DATA


@pytest.fixture(scope="module")
def readme_workdir(tmp_path_factory):
    """A copy of the workflow with the files the README's commands name: the own-data config and the
    placeholder files a dry run needs to exist (it reads none of them)."""
    workdir = copy_workflow(tmp_path_factory.mktemp("readme"))
    (workdir / "my_data.yaml").write_text(MY_DATA)
    place_paper_files_by_hand(workdir)
    (workdir / "data/my_cells.h5ad").touch()
    (workdir / MY_CHECKPOINT).mkdir(parents=True)
    return workdir


@pytest.mark.parametrize("command", COMMANDS)
def test_each_readme_command_plans_as_a_dry_run(readme_workdir, command):
    arguments = shlex.split(command)[1:]
    result = snakemake(readme_workdir, "-n", *arguments)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    planned_folds = re.findall(r"rule finetune_fold:\n(?:    .*\n)*?    wildcards: (.*)", result.stdout)
    if "--force" in arguments:  # the README says: that fold again, alone
        target = next(argument for argument in arguments if argument.endswith("predictions.tsv"))
        experiment, method, fold = target.split("/")[1:4]
        assert planned_folds == [f"experiment={experiment}, method={method}, fold={fold.removeprefix('fold_')}"]
    if "results/my_cells/summary.csv" in arguments:
        assert planned_folds and all("experiment=my_cells" in wildcards for wildcards in planned_folds)
        assert "rule pretrain:" not in result.stdout, "the README's own-data example fine-tunes a checkpoint"
