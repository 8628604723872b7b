# Shared helpers: the validated config and the names the other rule files use.
import json

from workflow_scripts.config import method_settings, validate_config

validate_config(config, source="config")  # fills schema defaults in place; stops on a bad config

EXPERIMENTS = list(config["experiments"])
FINETUNE_KINDS = {"finetune"}
PRETRAINED_MODEL = "results/pretrained_model"


def as_json(value):
    """A config section as one JSON string, for the CLI's --arg value form (quote with :q)."""
    return json.dumps(value, sort_keys=True)


def experiment(wildcards):
    return config["experiments"][wildcards.experiment]


def experiment_h5ad(wildcards):
    return f"results/data/{experiment(wildcards)['dataset']}.h5ad"


def methods_of(kinds_wanted, experiment_names=EXPERIMENTS):
    """Method names (across experiments) whose kind is / is not fine-tuning."""
    names = set()
    for name in experiment_names:
        for method, entry in config["experiments"][name]["methods"].items():
            if (entry["kind"] in FINETUNE_KINDS) == kinds_wanted:
                names.add(method)
    return sorted(names)


def folds_of(wildcards):
    return range(experiment(wildcards)["n_folds"])


def checkpoint_dir():
    """The model every fine-tuning starts from: the user's checkpoint, or the one pretrained here."""
    return config["model"]["checkpoint"] or PRETRAINED_MODEL


def alternatives(names):
    """A wildcard constraint matching exactly these names."""
    return "|".join(names) if names else "(?!)"


wildcard_constraints:
    dataset=r"[A-Za-z0-9_]+",
    experiment=alternatives(EXPERIMENTS),
    fold=r"\d+",
