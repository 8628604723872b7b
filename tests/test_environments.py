"""Conda environments (envs/*.yaml) agree with pyproject.toml, requirements.lock and what each rule's
command imports; pin files and `make conda-lock` produce what Snakemake and conda read. No network."""

from __future__ import annotations

import ast
import functools
import os
import platform
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from workflow_scripts.cli import COMMANDS

REPO = Path(__file__).resolve().parent.parent
ENVS = REPO / "envs"
PACKAGE = REPO / "workflow_scripts"
ENV_FILES = sorted(ENVS.glob("*.yaml"))
DATA_ENV, TORCH_ENV = ENVS / "data.yaml", ENVS / "torch.yaml"

# Import names that are not the PyPI distribution's name.
DISTRIBUTION_OF_IMPORT = {"sklearn": "scikit-learn", "yaml": "pyyaml"}
# Distributions a module needs without importing them by name.
IMPLICIT_NEEDS = {
    "aggregate.tables": {"tabulate"},  # DataFrame.to_markdown
    "core.counts": {"h5py"},  # anndata's h5ad reader, pinned so the environment reads HDF5 with the locked version
}
# Lazy imports that no job of a command reaching them runs, with the reason.
NOT_IN_JOBS = {
    ("core.config", "snakemake"): "validate_config runs in the Snakemake process (rules/common.smk), never in a job",
    ("core.batching", "torch"): "RaggedTokens.padded builds model inputs: only the model commands call it",
}
# Direct dependencies of the Snakemake process itself, not of jobs.
DRIVER_ONLY = {"snakemake", "snakemake-executor-plugin-slurm"}
# Commands whose jobs import torch (checks: when the run starts from a given checkpoint).
MODEL_COMMANDS = {"check", "pretrain", "finetune", "quantize", "embeddings", "perturb"}


def normalize(name: str) -> str:
    """PEP 503 name, so `PyYAML`, `pyyaml` and `scikit_learn` compare equal."""
    return re.sub(r"[-_.]+", "-", name).lower()


def exact_pins(requirements: list[str], source: str) -> dict[str, str]:
    """name -> version of `name==version` requirements; anything looser fails."""
    pins = {}
    for requirement in requirements:
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s=;]+)", requirement.strip())
        assert match, f"{source}: {requirement!r} is not pinned as name==version"
        pins[normalize(match[1])] = match[2]
    return pins


def env_spec(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def env_pins(path: Path) -> dict[str, str]:
    """The pip section's pins of an environment file."""
    pip_sections = [entry["pip"] for entry in env_spec(path)["dependencies"] if isinstance(entry, dict)]
    assert len(pip_sections) == 1, f"{path.name}: expected one pip section"
    return exact_pins(pip_sections[0], path.name)


def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def lock_versions() -> dict[str, str]:
    lines = (REPO / "requirements.lock").read_text().splitlines()
    return exact_pins([line for line in lines if line.strip() and not line.startswith("#")], "requirements.lock")


# --- what each command's job imports -------------------------------------------------------------


@functools.cache
def module_imports(module: str) -> tuple[frozenset[str], frozenset[str]]:
    """(workflow_scripts modules, dotted as `core.errors`, and third-party top-level names) a module
    imports anywhere, lazy imports included, with the packages whose __init__ each import runs;
    `if TYPE_CHECKING:` blocks are skipped (they never run)."""
    path = PACKAGE / (module.replace(".", "/") + ".py")
    tree = ast.parse(path.read_text())
    package = module.split(".")[:-1]
    internal, external = set(), set()

    def add_internal(dotted: str) -> None:
        parts = dotted.split(".")
        for end in range(1, len(parts)):
            internal.add(".".join(parts[:end]) + ".__init__")
        is_package = (PACKAGE / dotted.replace(".", "/")).is_dir()
        internal.add(dotted + ".__init__" if is_package else dotted)

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level:
            base = package[: len(package) - node.level + 1] + (node.module.split(".") if node.module else [])
            for alias in node.names:  # `from . import x` / `from .pkg import module` import modules
                candidate = ".".join([*base, alias.name])
                is_module = (PACKAGE / (candidate.replace(".", "/") + ".py")).is_file()
                add_internal(candidate if is_module else ".".join(base))
            names = []
        elif isinstance(node, ast.ImportFrom):
            names = [node.module]
        else:
            names = []
        for name in names:
            top, _, rest = name.partition(".")
            if top == "workflow_scripts":
                add_internal(rest) if rest else internal.add("__init__")
            elif top not in sys.stdlib_module_names and top != "__future__":
                external.add(top)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return frozenset(internal), frozenset(external)


@functools.cache
def command_needs(command: str) -> frozenset[str]:
    """Distributions a command's job may import: `python -m workflow_scripts` and the command's module,
    and every module they reach (module-level or lazily)."""
    todo, seen, needs = ["__init__", "__main__", "cli", COMMANDS[command].split(":")[0]], set(), set()
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        internal, external = module_imports(module)
        todo.extend(internal)
        used = [top for top in external if (module, top) not in NOT_IN_JOBS]
        needs |= {normalize(DISTRIBUTION_OF_IMPORT.get(top, top)) for top in used}
        needs |= IMPLICIT_NEEDS.get(module, set())
    return frozenset(needs)


# --- which command each rule runs, in which environment ------------------------------------------


def rule_blocks(text: str) -> dict[str, str]:
    """Each rule's text, from its `rule NAME:` line to the next unindented line."""
    blocks, name = {}, None
    for line in text.splitlines():
        header = re.match(r"(?:rule|checkpoint)\s+(\w+)\s*:", line)
        if header:
            name = header[1]
            blocks[name] = ""
        elif name and (not line.strip() or line[0].isspace()):
            blocks[name] += line + "\n"
        else:
            name = None
    return blocks


def directive(block: str, name: str) -> str:
    """The body of one directive (`    name:` up to the next directive at the same indentation)."""
    match = re.search(rf"^    {name}:(.*?)(?=^    \w+:|\Z)", block, re.M | re.S)
    return match[1] if match else ""


def rule_commands(block: str, rule: str) -> set[str]:
    """CLI commands a rule's shell runs; `{params.X}` in the command's place is read from the strings
    of param X that start with a command name (a rule choosing between commands per job).
    `{params.launcher}` starts a workflow_scripts command (directly, or through the GPU launcher)."""
    commands = set()
    shell = directive(block, "shell").replace("{params.launcher}", "python -m workflow_scripts")  # common.launcher
    for word in re.findall(r"python -m workflow_scripts (\{params\.\w+\}|[\w-]+)", shell):
        if word.startswith("{params."):
            entry = rf"^        {word[8:-1]}=(.*?)(?=^        \w+=|\Z)"
            param = re.search(entry, directive(block, "params"), re.M | re.S)
            assert param, f"rule {rule}: no param {word}"
            chosen = {name for name in re.findall(r'"([\w-]+)[ "]', param[1]) if name in COMMANDS}
            assert chosen, f"rule {rule}: param {word} names no workflow_scripts command"
            commands |= chosen
        else:
            assert word in COMMANDS, f"rule {rule}: `{word}` is not a workflow_scripts command"
            commands.add(word)
    return commands


def string_constants(rules_dir: Path) -> dict[str, str]:
    """NAME = "value" assignments of the rule files and the Snakefile beside them."""
    files = [*rules_dir.glob("*.smk"), rules_dir.parent / "Snakefile"]
    text = "\n".join(path.read_text() for path in files if path.exists())
    return dict(re.findall(r'^([A-Za-z_]\w*)\s*=\s*"([^"]+)"', text, re.M))


def rule_environments(rules_dir: Path) -> dict[str, tuple[Path, set[str]]]:
    """rule -> (its conda env file, the commands it runs), for every rule with a `conda:` directive.
    Snakemake reads the env path relative to the file that holds the rule."""
    constants, found = string_constants(rules_dir), {}
    for smk in sorted(rules_dir.glob("*.smk")):
        for rule, block in rule_blocks(smk.read_text()).items():
            value = directive(block, "conda").strip()
            if not value:
                continue
            literal = re.fullmatch(r"\"([^\"]+)\"|'([^']+)'", value)
            assert literal or value in constants, f"rule {rule}: cannot resolve conda: {value}"
            relative = (literal[1] or literal[2]) if literal else constants[value]
            found[rule] = ((smk.parent / relative).resolve(), rule_commands(block, rule))
    return found


def missing_packages(rules_dir: Path) -> dict[str, set[str]]:
    """rule -> what its commands import that its conda env does not pin (no entry: nothing missing)."""
    missing = {}
    for rule, (env_file, commands) in rule_environments(rules_dir).items():
        assert env_file.exists(), f"rule {rule}: conda env {env_file} does not exist"
        needed = set().union(*(command_needs(command) for command in commands))
        if needed - set(env_pins(env_file)):
            missing[rule] = needed - set(env_pins(env_file))
    return missing


# --- pin files -----------------------------------------------------------------------------------

CONDA_URL = re.compile(r"https://\S+/[^/\s]+\.(?:conda|tar\.bz2)(?:#[0-9a-f]{32}|#sha256:[0-9a-f]{64})?")
PIP_LINE = re.compile(r"# pip ([A-Za-z0-9._-]+) @ (https://\S+?)(?:#sha256=[0-9a-f]{64})?")


def artifact_version(url: str) -> str | None:
    """The version in a wheel's (name-version-tags.whl) or an sdist's (name-version.tar.gz) file name."""
    filename = url.rsplit("/", 1)[-1]
    match = re.fullmatch(r"[^-]+-([^-]+)-.+\.whl", filename) or re.fullmatch(r".+-([^-]+)\.(?:tar\.gz|zip)", filename)
    return match[1] if match else None


def pin_file_problems(pin_file: Path, pins: dict[str, str]) -> list[str]:
    """What is wrong with a Snakemake pin file (conda explicit format as conda-lock renders it: conda
    package URLs after @EXPLICIT, pip packages as `# pip name @ url` lines that conda skips)."""
    lines = [line.strip() for line in pin_file.read_text().splitlines() if line.strip()]
    if "@EXPLICIT" not in lines:
        return ["no @EXPLICIT line: conda would not read it as an explicit file"]
    body = lines[lines.index("@EXPLICIT") + 1:]
    problems = [f"not a conda package URL: {line}" for line in body if not line.startswith("#")
                and not CONDA_URL.fullmatch(line)]
    if not any(CONDA_URL.fullmatch(line) and "/python-3.11." in line for line in body):
        problems.append("no python 3.11 package")
    locked = {}
    for line in (line for line in body if line.startswith("# pip ")):
        match = PIP_LINE.fullmatch(line)
        if not match:
            problems.append(f"not a `# pip name @ https-url` line: {line}")
            continue
        locked[normalize(match[1])] = artifact_version(match[2])
    problems += [f"{name}: pinned {version}, locked {locked.get(name)}"
                 for name, version in pins.items() if locked.get(name) != version]
    return problems


# --- environment files ---------------------------------------------------------------------------


def test_the_two_environment_families_exist():
    assert {path.name for path in ENV_FILES} == {"data.yaml", "torch.yaml"}


@pytest.mark.parametrize("env_file", ENV_FILES, ids=lambda path: path.name)
def test_env_is_python_311_from_conda_forge_with_exact_pip_pins(env_file):
    spec = env_spec(env_file)
    assert spec["channels"] == ["conda-forge", "nodefaults"]
    conda_packages = [entry for entry in spec["dependencies"] if isinstance(entry, str)]
    assert conda_packages == ["python=3.11", "pip"]
    assert pyproject()["project"]["requires-python"] == ">=3.11,<3.12"
    assert env_pins(env_file)  # every pip entry is name==version (env_pins fails otherwise)


@pytest.mark.parametrize("env_file", ENV_FILES, ids=lambda path: path.name)
def test_env_pins_equal_pyproject_pins_and_requirements_lock(env_file):
    direct = exact_pins(pyproject()["project"]["dependencies"], "pyproject.toml")
    locked = lock_versions()
    for name, version in env_pins(env_file).items():
        assert direct.get(name) == version, f"{env_file.name}: {name}=={version}, pyproject.toml: {direct.get(name)}"
        assert locked.get(name) == version, f"{env_file.name}: {name}=={version}, requirements.lock: {locked.get(name)}"


def test_torch_env_is_the_data_env_plus_the_model_stack():
    data, torch = env_pins(DATA_ENV), env_pins(TORCH_ENV)
    assert data.items() <= torch.items()
    model_needs = set().union(*(command_needs(command) for command in MODEL_COMMANDS))
    assert set(torch) - set(data) == model_needs - set(data)


def test_data_env_holds_exactly_what_the_data_commands_import():
    data_commands = set(COMMANDS) - MODEL_COMMANDS
    assert set(env_pins(DATA_ENV)) == set().union(*(command_needs(command) for command in data_commands))


def test_import_analysis_finds_torch_in_exactly_the_model_commands():
    """The split depends on this: a data module that starts importing torch (or transformers) must move
    its rules to the torch env, and this names the command."""
    assert {command for command in COMMANDS if command_needs(command) & {"torch", "transformers"}} == MODEL_COMMANDS
    assert {"torch", "transformers", "safetensors", "torchao"} <= command_needs("quantize")
    assert "scanpy" in command_needs("baseline") and "torch" not in command_needs("baseline")
    for module, top in NOT_IN_JOBS:  # each exemption still names a real import
        assert top in module_imports(module)[1], (module, top)


def test_every_direct_dependency_is_needed_by_a_command_or_by_snakemake_itself():
    direct = set(exact_pins(pyproject()["project"]["dependencies"], "pyproject.toml"))
    needed = set().union(*(command_needs(command) for command in COMMANDS))
    assert direct - DRIVER_ONLY == needed
    assert needed <= set(env_pins(TORCH_ENV))


# --- rules -> environments -----------------------------------------------------------------------


def test_every_rule_runs_in_an_env_that_pins_what_its_commands_import():
    """Reads each rule's `conda:` value (a path, or a NAME = "path" constant of the rule files)."""
    environments = rule_environments(REPO / "rules")
    assert {"tokenize", "pretrain", "finetune_fold", "baseline_fold", "quantize_model"} <= set(environments)
    assert all(commands for _, commands in environments.values())
    assert missing_packages(REPO / "rules") == {}


def test_every_env_is_used_and_data_env_rules_never_run_model_commands():
    environments = rule_environments(REPO / "rules")
    assert {env_file for env_file, _ in environments.values()} == set(ENV_FILES)
    for rule, (env_file, commands) in environments.items():
        if env_file == DATA_ENV:
            assert not commands & MODEL_COMMANDS, rule


def test_the_checker_catches_a_model_command_in_the_data_env(tmp_path):
    """The rule parser on a rule in the real files' layout: command chosen through a param, env by name."""
    (tmp_path / "rules").mkdir()
    (tmp_path / "envs").mkdir()
    for env_file in (DATA_ENV, TORCH_ENV):
        shutil.copy(env_file, tmp_path / "envs" / env_file.name)
    (tmp_path / "rules" / "common.smk").write_text('DATA_ENV = "../envs/data.yaml"\nTORCH_ENV = "../envs/torch.yaml"\n')
    (tmp_path / "rules" / "train.smk").write_text(
        "rule train:\n"
        "    input:\n        tokens=\"tokens.dataset\",\n"
        "    conda:\n        DATA_ENV\n"
        "    params:\n"
        "        command=lambda wildcards, input: (\n"
        "            f\"embeddings --cells-tsv {input.cells}\" if is_gene_task(wildcards) else \"finetune\"\n"
        "        ),\n"
        "        seed=1,\n"
        "    shell:\n        \"python -m workflow_scripts {params.command} --seed {params.seed}\"\n\n\n"
        "rule count:\n"
        "    conda:\n        '../envs/data.yaml'\n"
        "    shell:\n        \"python -m workflow_scripts medians --h5ad-path x.h5ad\"\n"
    )
    environments = rule_environments(tmp_path / "rules")
    assert environments["train"] == ((tmp_path / "envs" / "data.yaml").resolve(), {"finetune", "embeddings"})
    assert environments["count"][1] == {"medians"}
    missing = missing_packages(tmp_path / "rules")
    assert set(missing) == {"train"} and {"torch", "transformers"} <= missing["train"]
    (tmp_path / "rules" / "common.smk").write_text('DATA_ENV = "../envs/torch.yaml"\n')
    assert missing_packages(tmp_path / "rules") == {}


# --- pin files, conda-lock, post-deploy scripts --------------------------------------------------


def conda_lock_render(pins: dict[str, str]) -> str:
    """A pin file as `conda-lock render -k explicit` writes it (header, @EXPLICIT, conda URLs#md5,
    `# pip name @ wheel-url#sha256=...`)."""
    pip_lines = [f"# pip {name} @ https://files.pythonhosted.org/packages/ab/cd/"
                 f"{name.replace('-', '_')}-{version}-py3-none-any.whl#sha256={'0' * 64}"
                 for name, version in sorted(pins.items())]
    return "\n".join([
        "# Generated by conda-lock.", "# platform: linux-64", f"# input_hash: {'a' * 64}", "@EXPLICIT",
        f"https://conda.anaconda.org/conda-forge/linux-64/libgcc-15.1.0-h767d61c_4.conda#{'1' * 32}",
        f"https://conda.anaconda.org/conda-forge/linux-64/python-3.11.13-h9e4cc4f_0_cpython.conda#{'2' * 32}",
        f"https://conda.anaconda.org/conda-forge/noarch/pip-25.2-pyh8b19718_0.conda#{'3' * 32}",
        *pip_lines]) + "\n"


def test_pin_file_checker_accepts_conda_lock_output_and_names_what_is_wrong(tmp_path):
    pins = env_pins(DATA_ENV)
    good = tmp_path / "data.linux-64.pin.txt"
    good.write_text(conda_lock_render(pins))
    assert pin_file_problems(good, pins) == []
    stale = tmp_path / "stale.linux-64.pin.txt"
    stale.write_text(conda_lock_render({**pins, "numpy": "1.26.4"}))
    assert pin_file_problems(stale, pins) == [f"numpy: pinned {pins['numpy']}, locked 1.26.4"]
    not_explicit = tmp_path / "env.linux-64.pin.txt"
    not_explicit.write_text("python=3.11\npip\n")
    assert "no @EXPLICIT" in pin_file_problems(not_explicit, pins)[0]


@pytest.mark.parametrize("pin_file", sorted(ENVS.glob("*.pin.txt")), ids=lambda path: path.name)
def test_committed_pin_files_are_explicit_and_match_their_env_and_post_deploy_script(pin_file):
    name, _, platform_name = pin_file.name.removesuffix(".pin.txt").rpartition(".")
    env_file, post_deploy = ENVS / f"{name}.yaml", ENVS / f"{name}.post-deploy.sh"
    assert env_file.exists() and platform_name == "linux-64"
    assert pin_file_problems(pin_file, env_pins(env_file)) == []
    pip_lines = [line for line in pin_file.read_text().splitlines() if line.startswith("# pip ")]
    template = (ENVS / "post-deploy.sh.in").read_text()
    assert post_deploy.read_text() == template + "".join(f"{line}\n" for line in pip_lines)


@pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")
def test_make_conda_lock_locks_renders_and_writes_post_deploy_for_every_env():
    result = subprocess.run(["make", "-n", "-B", "conda-lock"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    for env_file in ENV_FILES:
        env = f"envs/{env_file.stem}"
        assert f"conda-lock lock -f {env}.yaml -p linux-64 --lockfile {env}.conda-lock.yml" in result.stdout
        assert (f"conda-lock render -k explicit -p linux-64 --filename-template '{env}.{{platform}}.pin.txt' "
                f"{env}.conda-lock.yml") in result.stdout
        assert f"> {env}.post-deploy.sh.tmp" in result.stdout


@pytest.mark.skipif(shutil.which("make") is None or shutil.which("bash") is None, reason="needs GNU make and bash")
@pytest.mark.skipif((platform.system(), platform.machine()) != ("Linux", "x86_64"), reason="a linux-64 script")
def test_post_deploy_script_installs_the_pin_files_pip_lines_with_pip(tmp_path):
    """make builds the script from a pin file; run with a stand-in `python` (no network), it hands pip
    exactly the pin file's pip lines, without dependency resolution."""
    shutil.copy(REPO / "Makefile", tmp_path)
    (tmp_path / "envs").mkdir()
    shutil.copy(ENVS / "post-deploy.sh.in", tmp_path / "envs")
    pin_text = conda_lock_render({"torch": "2.13.0", "numpy": "2.4.6"})
    (tmp_path / "envs" / "demo.linux-64.pin.txt").write_text(pin_text)
    made = subprocess.run(["make", "-s", "envs/demo.post-deploy.sh"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60)
    assert made.returncode == 0, made.stderr
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").write_text('#!/usr/bin/env bash\necho "$@" > "$RECORD"\ncat "${@: -1}" >> "$RECORD"\n')
    (bin_dir / "python").chmod(0o755)
    record = tmp_path / "record.txt"
    environment = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "RECORD": str(record)}
    run = subprocess.run(["bash", "envs/demo.post-deploy.sh"], cwd=tmp_path, env=environment, capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    arguments, *requirements = record.read_text().splitlines()
    assert arguments.startswith("-m pip install --no-deps ") and " -r /dev/fd/" in arguments
    assert requirements == [line.removeprefix("# pip ") for line in pin_text.splitlines() if line.startswith("# pip ")]
