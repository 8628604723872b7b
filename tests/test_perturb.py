"""In silico perturbation: token edits, cosines against a hand calculation, null statistics, the
truth table and figures, and a planted driver recovered from a model trained on simulated cells."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import DEFAULT_CONFIG_PATH
from datasets import Dataset

from workflow_scripts.cli import main
from workflow_scripts.core.batching import RaggedTokens
from workflow_scripts.core.config import load_config
from workflow_scripts.core.encoder import token_states
from workflow_scripts.core.errors import InputError
from workflow_scripts.core.model import geneformer_config, new_masked_lm
from workflow_scripts.core.sections import ChecksSettings, TokenizerSettings
from workflow_scripts.finetune.finetuning import fine_tune, save_model
from workflow_scripts.finetune.settings import FinetuningSettings
from workflow_scripts.perturb.figures import plot_perturbation
from workflow_scripts.perturb.perturbation import (
    delete_tokens,
    matched_cosines,
    null_statistics,
    overexpress_tokens,
    plan_perturbations,
    run_perturbation,
)
from workflow_scripts.perturb.settings import PerturbationSettings
from workflow_scripts.perturb.truth import perturbation_truth
from workflow_scripts.reference.medians import build_reference, compute_gene_medians
from workflow_scripts.reference.settings import ReferenceSettings
from workflow_scripts.simulate.datasets import cardiomyocytes
from workflow_scripts.simulate.settings import SimulationSettings
from workflow_scripts.simulate.simulator import simulate_dataset
from workflow_scripts.tokenization.tokenizer import tokenize_dataset


def ragged(rows: list[list[int]]) -> RaggedTokens:
    return RaggedTokens(np.array([token for row in rows for token in row], dtype=np.int64),
                        np.concatenate([[0], np.cumsum([len(row) for row in rows])]).astype(np.int64))


def as_rows(tokens: RaggedTokens) -> list[list[int]]:
    return [tokens.values[tokens.offsets[i]:tokens.offsets[i + 1]].tolist() for i in range(len(tokens))]


CELLS = ragged([[5, 6, 7, 8], [9, 5, 3], [1, 2, 3, 4]])


def test_deletion_removes_exactly_the_gene_and_reports_cells_without_it():
    edit = delete_tokens(CELLS, [5])
    assert as_rows(edit.tokens) == [[6, 7, 8], [9, 3], [1, 2, 3, 4]]
    assert edit.n_present.tolist() == [1, 1, 0]  # the third cell lacks the gene: unchanged, reported
    assert as_rows(edit.removed) == [[0], [1], []]
    assert edit.n_front.tolist() == [0, 0, 0]
    assert CELLS.values[edit.kept].tolist() == edit.tokens.values.tolist()


def test_deletion_of_a_combination_removes_every_member():
    edit = delete_tokens(CELLS, [5, 3])
    assert as_rows(edit.tokens) == [[6, 7, 8], [9], [1, 2, 4]]
    assert edit.n_present.tolist() == [1, 2, 1]
    assert as_rows(edit.removed) == [[0], [1, 2], [2]]


def test_overexpression_moves_a_present_gene_to_the_front_and_inserts_an_absent_one():
    edit = overexpress_tokens(CELLS, [7], max_length=4)
    assert as_rows(edit.tokens) == [[7, 5, 6, 8], [7, 9, 5, 3], [7, 1, 2, 3]]
    assert edit.n_present.tolist() == [1, 0, 0]
    # moved: its old position is removed; inserted into a short cell: nothing lost; into a full
    # cell: the last gene falls off the input size and is removed from the original's side too
    assert as_rows(edit.removed) == [[2], [], [3]]
    assert edit.n_front.tolist() == [1, 1, 1]
    assert edit.tokens.lengths.max() <= 4


def test_overexpressed_combination_goes_to_the_front_in_order_and_truncates():
    edit = overexpress_tokens(CELLS, [3, 9], max_length=4)
    assert as_rows(edit.tokens) == [[3, 9, 5, 6], [3, 9, 5], [3, 9, 1, 2]]
    assert as_rows(edit.removed) == [[2, 3], [0, 2], [2, 3]]
    per_cell = overexpress_tokens(CELLS, ragged([[7], [1, 2], [4]]), max_length=4)  # one target set per cell
    assert as_rows(per_cell.tokens) == [[7, 5, 6, 8], [1, 2, 9, 5], [4, 1, 2, 3]]
    assert per_cell.n_front.tolist() == [1, 2, 1]


def test_edits_refuse_impossible_requests():
    with pytest.raises(InputError, match="exceed the model input size"):
        overexpress_tokens(CELLS, [1, 2, 3], max_length=2)
    with pytest.raises(InputError, match="repeat a gene"):
        delete_tokens(CELLS, [5, 5])


def test_matched_cosines_pool_the_same_genes_on_both_sides():
    """Against a loop: the original's removed positions (and the perturbed front) left out."""
    generator = torch.Generator().manual_seed(0)
    original_states = torch.randn(3, 4, 5, generator=generator)
    for edit in (delete_tokens(CELLS, [5]), overexpress_tokens(CELLS, [7], max_length=4)):
        perturbed_states = torch.randn(3, 4, 5, generator=generator)
        cell_cosine, gene_cosine, unmoved = matched_cosines(original_states, np.arange(3), CELLS, edit,
                                                            perturbed_states)
        expected_genes, expected_unmoved = [], []
        for row in range(3):
            kept = [p for p in range(CELLS.lengths[row]) if p not in as_rows(edit.removed)[row]]
            front = int(edit.n_front[row])
            before = original_states[row, kept]
            after = perturbed_states[row, front:front + len(kept)]
            expected = torch.nn.functional.cosine_similarity(before.mean(0), after.mean(0), dim=0)
            assert cell_cosine[row] == pytest.approx(float(expected), abs=1e-6)
            expected_genes.append(torch.nn.functional.cosine_similarity(before, after, dim=1))
            expected_unmoved += [position == front + rank for rank, position in enumerate(kept)]
        assert torch.allclose(gene_cosine, torch.cat(expected_genes), atol=1e-6)
        assert unmoved.tolist() == expected_unmoved
    # Deleting 5 from [5, 6, 7, 8] moves every later gene; from [9, 5, 3] only 3; overexpressing 7
    # (third of [5, 6, 7, 8]) moves the genes before it and keeps 8 in place.
    assert matched_cosines(original_states, np.arange(3), CELLS, delete_tokens(CELLS, [5]),
                           perturbed_states)[2].tolist() == [False, False, False, True, False, True, True, True, True]
    assert matched_cosines(original_states, np.arange(3), CELLS, overexpress_tokens(CELLS, [7], max_length=4),
                           perturbed_states)[2][:3].tolist() == [False, False, True]


def test_null_statistics_find_a_planted_shift_and_fdr_is_at_least_p():
    rng = np.random.default_rng(0)
    null = rng.normal(0.0, 1.0, 2000)
    samples = [rng.normal(0.0, 1.0, 60) for _ in range(9)] + [rng.normal(3.0, 1.0, 60), np.array([])]
    p_values, fdr = null_statistics(samples, null)
    assert p_values[9] < 1e-20 and fdr[9] < 1e-18
    assert np.median(p_values[:9]) > 0.05
    assert np.all(fdr[:10] >= p_values[:10] - 1e-15)
    assert np.isnan(p_values[10]) and np.isnan(fdr[10])


def test_plan_names_frequent_and_null_genes_without_repeats():
    gene_of_token = {token: f"G{token}" for token in range(2, 12)}
    presence = np.array([0, 0, 9, 8, 7, 6, 5, 4, 1, 1, 0, 3])  # cells holding each token, of 10
    plan = plan_perturbations(presence, 10, gene_of_token, ["G10"], [["G9", "G2"]], 3, 0.3, 3, 2,
                              np.random.default_rng(0))
    singles = [label for label, kinds in zip(plan.labels, plan.kinds) if "gene" in kinds]
    assert singles == ["G10", "G9", "G2", "G3", "G4"]  # named, members, then the 3 most frequent
    null = [label for label, kinds in zip(plan.labels, plan.kinds) if "random" in kinds]
    assert len(null) == 3 and not set(null) & {"G10", "G9", "G2"}  # named genes never serve as null
    assert all(presence[int(gene[1:])] >= 3 for gene in null)
    combination = plan.labels.index("G9+G2")
    assert plan.members[combination] == [1, 2]
    pairs = [index for index, kinds in enumerate(plan.kinds) if "random_pair" in kinds]
    assert len(pairs) == 2 and len({plan.labels[index] for index in pairs}) == 2  # distinct pairs of null genes
    for index in pairs:
        assert {plan.labels[member] for member in plan.members[index]} == set(plan.labels[index].split("+")) <= set(null)
    again = plan_perturbations(presence, 10, gene_of_token, ["G10"], [["G9", "G2"]], 3, 0.3, 3, 2,
                               np.random.default_rng(0))
    assert again.labels == plan.labels
    with pytest.raises(InputError, match="not in the token dictionary"):
        plan_perturbations(presence, 10, gene_of_token, ["G99"], [], 3, 0.3, 3, 0, np.random.default_rng(0))
    with pytest.raises(InputError, match="names a gene twice"):  # the schema checks only that there are two
        plan_perturbations(presence, 10, gene_of_token, [], [["G9", "G9"]], 3, 0.3, 3, 0, np.random.default_rng(0))


TINY_BERT = {"hidden_size": 32, "num_hidden_layers": 4, "num_attention_heads": 2, "intermediate_size": 64,
             "hidden_act": "relu", "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
             "initializer_range": 0.02, "layer_norm_eps": 1e-12}


# A tokenized dataset in the tokenizer's format and a small masked LM, for hand-checked runs.
GENES = [f"ENSG{index:011d}" for index in range(2, 22)]
START_CELLS = [[2, 3, 4, 5, 6, 7], [4, 2, 8, 9], [10, 11, 2, 12, 3], [13, 14, 15, 16, 17, 18], [3, 2]]
GOAL_CELLS = [[19, 20, 21, 2], [5, 19, 6]]


@pytest.fixture(scope="module")
def small_run(tmp_path_factory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("perturb")
    vocabulary = pd.DataFrame({"token": ["<pad>", "<mask>", *GENES], "token_id": range(2 + len(GENES))})
    vocabulary.to_csv(directory / "tokens.tsv", sep="\t", index=False)
    cells = START_CELLS + GOAL_CELLS
    Dataset.from_dict({
        "input_ids": cells, "length": [len(cell) for cell in cells],
        "cell_id": [f"cell_{i}" for i in range(len(cells))],
        "disease": ["DCM"] * len(START_CELLS) + ["NF"] * len(GOAL_CELLS),
    }).save_to_disk(str(directory / "cells.dataset"))
    model = {**TINY_BERT, "hidden_size": 16, "num_hidden_layers": 2, "intermediate_size": 32,
             "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0, "initializer_range": 0.5}
    new_masked_lm(geneformer_config(model, len(vocabulary), model_input_size=6), seed=0).save_pretrained(
        directory / "model")
    return {"directory": directory, "tokens": directory / "tokens.tsv", "cells": directory / "cells.dataset",
            "model": directory / "model"}


ANALYSIS = "treatment"


def _section(direction: str, start_state: str = "DCM", **changes) -> dict:
    """A perturbation section as the schema fills it, with one analysis (ANALYSIS)."""
    analysis = {"start_state": start_state, "goal_state": "NF", "direction": direction, "model": "finetuned"}
    return {"model": {"experiment": "cardiomyopathy", "method": "geneformer", "fold": 0}, "state_column": "disease",
            "analyses": {ANALYSIS: analysis}, "genes": [GENES[0]], "combinations": [[GENES[0], GENES[1]]],
            "max_cells": 100, "max_genes": 0, "min_cell_fraction": 0.0, "n_null_genes": 3, "n_null_pairs": 2,
            "min_cells": 1, "layer": -2, "batch_size": 2, **changes}


def _run(small_run: dict[str, Path], direction: str, analysis: str = ANALYSIS, **changes
         ) -> tuple[pd.DataFrame, pd.DataFrame]:
    output, shifts = small_run["directory"] / f"{direction}.tsv", small_run["directory"] / f"{direction}_shifts.tsv"
    run_perturbation(small_run["model"], small_run["cells"], small_run["tokens"],
                     PerturbationSettings.from_config(_section(direction, **changes)), analysis, 0, output, shifts)
    return pd.read_csv(output, sep="\t"), pd.read_csv(shifts, sep="\t")


def _embed(model, cell: list[int]) -> torch.Tensor:
    input_ids = torch.tensor([cell])
    return token_states(model, input_ids, torch.ones_like(input_ids), -2)[0]


@pytest.mark.parametrize("direction", ["delete", "overexpress"])
def test_run_matches_a_cell_by_cell_hand_calculation(small_run, direction):
    """Gene token 2 (GENES[0]) perturbed cell by cell, unbatched, against the batched run: cell and
    goal shifts, every other gene's shift (all cells, and cells where it kept its position), and
    the same gene's shifts recorded again on the cells of its combination with token 3."""
    from transformers import BertModel

    results, shifts = _run(small_run, direction)
    model = BertModel.from_pretrained(small_run["model"], add_pooling_layer=False).eval()
    goal = torch.stack([_embed(model, cell).mean(0) for cell in GOAL_CELLS]).mean(0)
    edit_of = {"delete": lambda cells: delete_tokens(cells, [2]),
               "overexpress": lambda cells: overexpress_tokens(cells, [2], max_length=6)}[direction]
    cosines, goal_shifts, affected = [], [], []  # affected: (gene, shift, kept its position, in combination cells)
    for cell in START_CELLS:
        edit = edit_of(ragged([cell]))
        if direction == "delete" and (edit.n_present[0] == 0 or len(cell) == 1):
            continue
        in_combination = direction == "overexpress" or ({2, 3} <= set(cell) and len(cell) > 2)
        perturbed_cell = as_rows(edit.tokens)[0]
        before, after = _embed(model, cell), _embed(model, perturbed_cell)
        kept = [p for p in range(len(cell)) if p not in as_rows(edit.removed)[0]]
        front = int(edit.n_front[0])
        matched_after = after[front:front + len(kept)]
        cosines.append(float(torch.nn.functional.cosine_similarity(before[kept].mean(0), matched_after.mean(0), dim=0)))
        goal_shifts.append(float(torch.nn.functional.cosine_similarity(after.mean(0), goal, dim=0)
                                 - torch.nn.functional.cosine_similarity(before.mean(0), goal, dim=0)))
        gene_cosines = torch.nn.functional.cosine_similarity(before[kept], matched_after, dim=1)
        for rank, (position, cosine) in enumerate(zip(kept, gene_cosines)):
            affected.append((GENES[cell[position] - 2], 1 - float(cosine), position == front + rank, in_combination))
    row = results[(results["kind"] == "gene") & (results["genes"] == GENES[0])].iloc[0]
    expected_cells = 4 if direction == "delete" else len(START_CELLS)  # [3, 2] keeps a gene; [13..18] lacks it
    assert row["n_cells"] == len(cosines) == expected_cells
    assert row["cell_cosine"] == pytest.approx(np.mean(cosines), abs=1e-5)
    assert row["goal_shift"] == pytest.approx(np.mean(goal_shifts), abs=1e-5)
    combination_label = f"{GENES[0]}+{GENES[1]}"
    for context, cells in (("", lambda in_combination: True), (combination_label, lambda in_combination: in_combination)):
        mine = shifts[(shifts["perturbed"] == GENES[0]) & (shifts["context"].fillna("") == context)].set_index("affected")
        expected = pd.DataFrame([entry for entry in affected if cells(entry[3])],
                                columns=["gene", "shift", "unmoved", "in_combination"])
        assert set(mine.index) == set(expected["gene"])
        for gene, values in expected.groupby("gene"):
            assert mine.loc[gene, "mean_shift"] == pytest.approx(values["shift"].mean(), abs=1e-5)
            assert mine.loc[gene, "n_cells"] == len(values)
            unmoved = values.loc[values["unmoved"], "shift"]
            assert mine.loc[gene, "n_cells_unmoved"] == len(unmoved)
            if len(unmoved):
                assert mine.loc[gene, "mean_shift_unmoved"] == pytest.approx(unmoved.mean(), abs=1e-5)
            else:
                assert np.isnan(mine.loc[gene, "mean_shift_unmoved"])
    combination = results[results["kind"] == "combination"].iloc[0]
    assert combination["genes"] == combination_label
    assert np.isfinite(combination["synergy"]) and (results["kind"] == "random").sum() == 3
    null_pairs = results[results["kind"] == "random_pair"]
    null_synergy = null_pairs["synergy"].dropna()  # a pair no cell holds both of has none (deletion)
    assert len(null_pairs) == 2 and len(null_synergy) >= 1
    assert combination["synergy_percentile"] == pytest.approx(100 * np.mean(null_synergy <= combination["synergy"]))
    assert (results["analysis"] == ANALYSIS).all() and (results["direction"] == direction).all()


def test_genes_in_too_few_cells_are_reported_but_not_ranked(small_run):
    results, _ = _run(small_run, "delete", min_cells=3, max_genes=30)
    genes = results[results["kind"] == "gene"]
    assert (genes["ranked"] == (genes["n_cells"] >= 3)).all() and not genes["ranked"].all()
    assert genes.loc[~genes["ranked"], ["p_cell_shift", "fdr_cell_shift"]].isna().all().all()
    assert genes.loc[genes["ranked"], "p_cell_shift"].notna().all()


def test_run_is_seeded_and_refuses_bad_input(small_run):
    first, _ = _run(small_run, "delete")
    again, _ = _run(small_run, "delete")
    pd.testing.assert_frame_equal(first, again)
    with pytest.raises(InputError, match="'disease_modelling' is not an analysis"):
        _run(small_run, "delete", analysis="disease_modelling")
    with pytest.raises(InputError, match="no column 'condition'"):
        _run(small_run, "delete", state_column="condition")
    with pytest.raises(InputError, match="no cell has disease 'HCM'"):
        _run(small_run, "delete", start_state="HCM")


@pytest.mark.parametrize(("change", "key"), [
    (lambda section: {("max_cell" if name == "max_cells" else name): value for name, value in section.items()},
     "--settings.max_cell"),
    (lambda section: {**section, "analyses": {ANALYSIS: {**section["analyses"][ANALYSIS], "goal_stat": "NF"}}},
     f"--settings.analyses.{ANALYSIS}.goal_stat"),
])
def test_a_misspelt_setting_is_refused_when_the_command_is_parsed(small_run, tmp_path, capsys, change, key):
    """Named before any file is read (the tokenized path does not even exist)."""
    settings = json.dumps(change(_section("delete")))
    code = main(["perturb", "--checkpoint", str(small_run["model"]), "--tokenized-dir", str(tmp_path / "missing"),
                 "--token-dictionary-tsv", str(small_run["tokens"]), "--settings", settings, "--analysis", ANALYSIS,
                 "--seed", "0", "--output-tsv", str(tmp_path / "out.tsv"),
                 "--output-gene-shifts-tsv", str(tmp_path / "shifts.tsv")])
    error = capsys.readouterr().err
    assert code == 2 and f"{key}: is not a setting of" in error and str(tmp_path / "missing") not in error
    assert not list(tmp_path.iterdir())


TRUTH = {
    "driver": {"gene": "D", "target_genes": ["T1", "T2", "T3"]},
    "cooperating_pair": {"genes": ["P1", "P2"], "target_genes": ["Q1"]},
    "control_genes": ["C1", "C2"],
}


def _results_table() -> pd.DataFrame:
    genes = ["D", "P1", "P2", "C1", "C2"] + [f"X{i}" for i in range(15)] + ["C3"]
    cell_shift = [0.9, 0.2, 0.3, 0.05, 0.06] + list(np.linspace(0.1, 0.5, 15)) + [0.99]
    table = pd.DataFrame({"analysis": "treatment", "direction": "delete", "start_state": "DCM", "goal_state": "NF",
                          "kind": "gene", "genes": genes, "n_cells": [10] * 20 + [2], "ranked": [True] * 20 + [False],
                          "cell_shift": cell_shift, "goal_shift": np.array(cell_shift) / 10, "fdr_cell_shift": 0.01,
                          "fdr_goal_shift": 0.02, "cell_shift_null_mean": 0.1, "goal_shift_null_mean": 0.01,
                          "member_cell_shifts": "", "synergy": np.nan, "member_goal_shifts": "",
                          "goal_synergy": np.nan, "synergy_percentile": np.nan, "goal_synergy_percentile": np.nan,
                          "synergy_null_mean": -0.05})
    pair = {**table.iloc[1].to_dict(), "kind": "combination", "genes": "P1+P2", "cell_shift": 0.6,
            "goal_shift": 0.06, "member_cell_shifts": "0.2;0.3", "synergy": 0.1, "member_goal_shifts": "0.02;0.03",
            "goal_synergy": 0.01, "synergy_percentile": 95.0, "goal_synergy_percentile": 90.0}
    weak_pair = {**pair, "genes": "P2+P1", "cell_shift": 0.01}  # placed below every gene: rank 21 of 21
    null = {**table.iloc[5].to_dict(), "kind": "random", "genes": "N1"}
    return pd.concat([table, pd.DataFrame([pair, null])], ignore_index=True), weak_pair


# Gene shifts: the driver's targets T* shift more than others when their positions are kept (but
# not over all cells); the pair's co-bound target Q1 shifts more jointly than P1 and P2 alone add up.
SHIFTS = pd.DataFrame([
    *[("D", "", gene, all_cells, unmoved) for gene, all_cells, unmoved in
      [("T1", 0.1, 0.5), ("T2", 0.1, 0.6), ("T3", 0.1, 0.7), ("Y1", 0.9, 0.1), ("Y2", 0.9, 0.2), ("Y3", 0.9, 0.15)]],
    ("P1+P2", "", "Q1", 0.4, 0.4), ("P1+P2", "", "Y1", 0.1, 0.1), ("P1+P2", "", "Y2", 0.1, 0.1),
    ("P1", "P1+P2", "Q1", 0.1, 0.1), ("P1", "P1+P2", "Y1", 0.05, 0.05), ("P1", "P1+P2", "Y2", 0.06, 0.06),
    ("P2", "P1+P2", "Q1", 0.1, 0.1), ("P2", "P1+P2", "Y1", 0.05, 0.05), ("P2", "P1+P2", "Y2", 0.05, 0.05),
    ("P1", "", "Q1", 0.9, 0.9),  # the member on all its cells: not what the synergy uses
], columns=["perturbed", "context", "affected", "mean_shift", "mean_shift_unmoved"]).assign(
    n_cells=5, n_cells_unmoved=5)


def test_truth_table_ranks_planted_genes_and_tests_driver_targets(tmp_path):
    results, weak_pair = _results_table()
    results.to_csv(tmp_path / "delete.tsv", sep="\t", index=False)
    SHIFTS.to_csv(tmp_path / "shifts.tsv", sep="\t", index=False)
    (tmp_path / "truth.json").write_text(json.dumps({**TRUTH, "control_genes": ["C1", "C2", "C3"]}))
    perturbation_truth([str(tmp_path / "delete.tsv")], [str(tmp_path / "shifts.tsv")], tmp_path / "truth.json",
                       tmp_path / "truth.csv")
    truth = pd.read_csv(tmp_path / "truth.csv")
    assert set(truth["analysis"]) == {"treatment"} and set(truth["direction"]) == {"delete"}
    table = truth.set_index(["role", "genes", "metric"])["value"]
    assert table[("driver", "D", "rank_cell_shift")] == 1
    assert table[("driver", "D", "top_percent_cell_shift")] == pytest.approx(5.0)  # 1 of 20 ranked genes
    assert table[("pair", "P1+P2", "rank_cell_shift")] == 2  # 0.6 beats every gene but the driver
    assert table[("pair", "P1+P2", "top_percent_cell_shift")] == pytest.approx(100 * 2 / 21)  # among 20 genes + itself
    assert table[("pair", "P1+P2", "synergy")] == pytest.approx(0.1)
    assert table[("pair", "P1+P2", "synergy_percentile")] == pytest.approx(95.0)
    assert table[("control", "C1", "rank_cell_shift")] == 20
    assert table[("control", "C3", "ranked")] == 0 and np.isnan(table[("control", "C3", "rank_cell_shift")])
    assert table[("control", "C3", "n_cells")] == 2  # reported, not ranked: 2 cells can reach any rank
    assert table[("controls", "C1+C2+C3", "n_ranked")] == 2
    assert table[("driver_targets", "D", "mean_shift_targets")] == pytest.approx(0.6)
    assert table[("driver_targets", "D", "mean_shift_non_targets")] == pytest.approx(0.15)
    assert table[("driver_targets", "D", "p_targets_greater")] < 0.1
    assert table[("driver_targets", "D", "p_targets_greater_all_positions")] > 0.9
    assert table[("pair_targets", "P1+P2", "n_targets")] == 1
    assert table[("pair_targets", "P1+P2", "target_synergy")] == pytest.approx(0.2)  # 0.4 - (0.1 + 0.1)
    assert table[("pair_targets", "P1+P2", "non_target_synergy")] == pytest.approx((0.0 - 0.01) / 2)
    results.iloc[:-2].pipe(lambda genes: pd.concat([genes, pd.DataFrame([weak_pair])])).to_csv(
        tmp_path / "weak.tsv", sep="\t", index=False)
    perturbation_truth([str(tmp_path / "weak.tsv")], [str(tmp_path / "shifts.tsv")], tmp_path / "truth.json",
                       tmp_path / "weak.csv")
    weak = pd.read_csv(tmp_path / "weak.csv").set_index(["role", "genes", "metric"])["value"]
    assert weak[("pair", "P2+P1", "top_percent_cell_shift")] == pytest.approx(100.0)  # never above 100
    with pytest.raises(InputError, match="one gene shift file per results file"):
        perturbation_truth([str(tmp_path / "delete.tsv")], [], tmp_path / "truth.json", tmp_path / "x.csv")


def test_perturbation_figures_are_written(tmp_path):
    table, _ = _results_table()
    table.to_csv(tmp_path / "delete.tsv", sep="\t", index=False)
    table.assign(direction="overexpress").to_csv(tmp_path / "overexpress.tsv", sep="\t", index=False)
    SHIFTS.to_csv(tmp_path / "shifts.tsv", sep="\t", index=False)
    (tmp_path / "truth.json").write_text(json.dumps(TRUTH))
    paths = plot_perturbation([str(tmp_path / "delete.tsv"), str(tmp_path / "overexpress.tsv")], tmp_path / "figures",
                              str(tmp_path / "truth.json"), [str(tmp_path / "shifts.tsv")] * 2, top_n=5)
    names = ("shifts", "top_genes", "combinations", "targets")
    assert sorted(path.name for path in paths) == sorted(
        f"perturbation_{name}.{suffix}" for name in names for suffix in ("png", "pdf"))
    assert all(path.stat().st_size > 1000 for path in paths)


# Simulated cardiomyocytes with the planted driver as the only disease signal: the failing-heart
# and disease programs and donor gene effects are switched off, so NF and DCM differ by the driver's
# expression alone and a classifier that separates them must rely on it. With every signal on (the
# simulator's defaults), the disease is written into dozens of genes and donors, and a small model
# does not single out the driver (see perturbation_truth in the workflow).
DRIVER_ONLY = {"FAILING_PROGRAM_ACTIVITY": 0.0, "DISEASE_SPECIFIC_ACTIVITY": 0.0, "DONOR_GENE_LOG_SD": 0.0,
               "DONOR_STATE_MAX_ACTIVITY": 0.0, "DRIVER_LOG_FOLD_CHANGE": 3.0}
SIMULATION = {"n_genes": 300, "n_programs": 20, "corpus": {"n_cells": 400}, "dosage_genes": {"n_per_class": 15},
              "cardiomyocytes": {"n_cells": 600, "donors_per_disease": {"NF": 3, "HCM": 3, "DCM": 3}}}


def test_deleting_a_planted_driver_ranks_in_the_top_5_percent(tmp_path, monkeypatch):
    for name, value in DRIVER_ONLY.items():
        monkeypatch.setattr(cardiomyocytes, name, value)
    torch.set_num_threads(1)
    config = load_config(DEFAULT_CONFIG_PATH, overrides={"simulation": SIMULATION})
    seed = 1
    for name in ("corpus", "cardiomyocytes"):
        simulate_dataset(name, SimulationSettings.from_config(config["simulation"]), seed, tmp_path / f"{name}.h5ad",
                         tmp_path / f"{name}.truth.json")
    tokenizer = TokenizerSettings(model_input_size=64, special_tokens=False, chunk_size=500)
    compute_gene_medians(tmp_path / "corpus.h5ad", tmp_path / "medians.tsv", tokenizer)
    build_reference(ReferenceSettings(medians="corpus", token_dictionary="corpus"), tokenizer, tmp_path / "medians.tsv",
                    tmp_path / "tokens.tsv", tmp_path / "used.tsv")
    tokenize_dataset(tmp_path / "cardiomyocytes.h5ad", tmp_path / "tokens.tsv", tmp_path / "used.tsv",
                     tmp_path / "cells.dataset", TokenizerSettings(model_input_size=64, special_tokens=False, chunk_size=600),
                     ChecksSettings(min_genes_in_vocabulary=50, min_genes_per_class=10, min_count_share_in_vocabulary=0.5), ["disease"])

    from workflow_scripts.core.batching import load_tokenized

    tokens, dataset = load_tokenized(tmp_path / "cells.dataset")
    disease = np.asarray(dataset["disease"])
    labels = torch.from_numpy((disease == "DCM").astype(np.int64))
    vocab_size = len(pd.read_csv(tmp_path / "tokens.tsv", sep="\t"))
    new_masked_lm(geneformer_config(TINY_BERT, vocab_size, 64), 0).save_pretrained(tmp_path / "init")
    settings = {**config["finetuning"], "epochs": 6, "batch_size": 16, "learning_rate": 1e-3, "warmup_steps": 5}

    def loss_of_batch(net, input_ids, attention_mask, rows):
        logits = net(input_ids=input_ids, attention_mask=attention_mask).logits
        return torch.nn.functional.cross_entropy(logits, labels[rows])

    model = fine_tune("sequence", tmp_path / "init", ["NF", "DCM"], tokens, np.flatnonzero(disease != "HCM"),
                      loss_of_batch, FinetuningSettings.from_config(settings), 0, torch.device("cpu"), None)
    save_model(model, tmp_path / "model")

    perturbation = PerturbationSettings.from_config({
        **config["perturbation"], "state_column": "disease", "max_cells": 300, "max_genes": 100,
        "min_cell_fraction": 0.05, "n_null_genes": 20, "layer": -2, "batch_size": 64, "min_cells": 10,
        "analyses": {"treatment": {"start_state": "DCM", "goal_state": "NF", "direction": "delete",
                                   "model": "finetuned"}}})
    run_perturbation(tmp_path / "model", tmp_path / "cells.dataset", tmp_path / "tokens.tsv", perturbation,
                     "treatment", 0, tmp_path / "delete.tsv", tmp_path / "shifts.tsv",
                     truth_json=tmp_path / "cardiomyocytes.truth.json")  # planted genes
    perturbation_truth([str(tmp_path / "delete.tsv")], [str(tmp_path / "shifts.tsv")],
                       tmp_path / "cardiomyocytes.truth.json", tmp_path / "truth.csv")
    table = pd.read_csv(tmp_path / "truth.csv")
    table = dict(zip(zip(table["role"], table["metric"]), table["value"]))  # driver and controls: one row each
    assert table[("driver", "n_tested_genes")] >= 100
    assert table[("driver", "top_percent_cell_shift")] <= 5.0
    assert table[("driver", "fdr_cell_shift")] < 0.05
    assert table[("controls", "median_top_percent_cell_shift")] > 20.0
    assert table[("pair", "tested")] == 1  # the truth file's pair was perturbed as a combination
