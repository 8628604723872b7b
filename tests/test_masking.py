"""Masking strategies of masked-LM pretraining: the 80/10/10 and 80/2/18 mixes, pathway (gene-set)
masking, the masking-rate schedule, and GMT gene-set files."""

from dataclasses import replace

import pytest
import torch

from workflow_scripts.core.errors import InputError
from workflow_scripts.pretrain.masking import (
    build_masking,
    evaluation_settings,
    gene_sets_for_vocabulary,
    mask_tokens,
    masking_rate,
    read_gmt,
)
from workflow_scripts.pretrain.settings import MaskingSettings

SPECIALS = {"<pad>": 0, "<mask>": 1, "<cls>": 2, "<eos>": 3}
N_TOKENS = 400
VOCABULARY = {**SPECIALS, **{f"ENSG{token:011d}": token for token in range(4, N_TOKENS)}}
SETTINGS = MaskingSettings(strategy="random", mask_probability=0.15, mask_token_fraction=0.8, random_token_fraction=0.1,
                           schedule="constant", start_probability=0.3, end_probability=0.1, gene_sets="simulated")


def outcome_shares(input_ids, corrupted, selected, mask_id=1):
    """Shares of the selected tokens turned into <mask>, into another token, and kept."""
    masked = (corrupted == mask_id) & selected
    changed = (corrupted != input_ids) & selected & ~masked
    kept = (corrupted == input_ids) & selected
    n = selected.sum().item()
    return masked.sum().item() / n, changed.sum().item() / n, kept.sum().item() / n


@pytest.mark.parametrize("mix", [(0.8, 0.1), (0.8, 0.02)])  # BERT / Geneformer, and BioNeMo's 80/2/18
def test_masking_proportions_hold_on_a_large_sample_and_never_touch_padding(mix):
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(4, 1000, (400, 500))
    input_ids[:, -50:] = 0  # padding
    maskable = input_ids != 0
    settings = replace(SETTINGS, mask_token_fraction=mix[0], random_token_fraction=mix[1])
    corrupted, selected = mask_tokens(input_ids, maskable, settings, mask_id=1,
                                      gene_ids=torch.arange(4, 1000), generator=generator)
    assert not selected[~maskable].any()
    assert abs(selected[maskable].float().mean().item() - 0.15) < 0.005
    masked, changed, kept = outcome_shares(input_ids, corrupted, selected)
    # random replacements can hit the original token (1 in 996), so "kept" is the rest + a hair
    assert abs(masked - mix[0]) < 0.01
    assert abs(changed - mix[1]) < 0.01
    assert abs(kept - (1 - mix[0] - mix[1])) < 0.01
    assert torch.equal(corrupted[~selected], input_ids[~selected])


def test_random_strategy_keeps_the_draw_sequence_of_the_original_masking():
    """Two uniform draws then one randint over the batch shape, in that order: the default pretraining
    output (and the checkpoints of earlier runs) depends on it."""
    input_ids = torch.randint(4, N_TOKENS, (8, 30))
    attention_mask = torch.ones_like(input_ids)
    attention_mask[:, 25:] = 0
    input_ids[attention_mask == 0] = 0
    corrupted, selected = build_masking(SETTINGS, VOCABULARY)(input_ids, attention_mask,
                                                              torch.Generator().manual_seed(3))
    generator = torch.Generator().manual_seed(3)
    expected_selected = (torch.rand(input_ids.shape, generator=generator) < 0.15) & (attention_mask == 1)
    action = torch.rand(input_ids.shape, generator=generator)
    picks = torch.randint(N_TOKENS - 4, input_ids.shape, generator=generator) + 4
    expected = torch.where(expected_selected & (action < 0.8), 1, input_ids)
    expected = torch.where(expected_selected & (action >= 0.8) & (action < 0.8 + 0.1), picks, expected)
    assert torch.equal(selected, expected_selected) and torch.equal(corrupted, expected)


def write_gmt(path, sets):
    path.write_text("".join(f"{name}\tsome description\t" + "\t".join(genes) + "\n" for name, genes in sets.items()))
    return path


def gene(token):
    return f"ENSG{token:011d}"


def test_pathway_masking_masks_whole_sets_and_never_special_or_padding_tokens(tmp_path):
    sets = {f"program_{k}": [gene(token) for token in range(4 + 12 * k, 16 + 12 * k)] for k in range(20)}
    masking = build_masking(replace(SETTINGS, strategy="pathway"), VOCABULARY, write_gmt(tmp_path / "sets.gmt", sets))
    generator = torch.Generator().manual_seed(0)
    rows = []
    for _ in range(300):  # cells: <cls>, 60 distinct genes (set genes and loners), <eos>, then padding
        length = int(torch.randint(20, 61, (1,), generator=generator))
        genes = torch.randperm(N_TOKENS - 4, generator=generator)[:length] + 4
        padding = torch.zeros(60 - length, dtype=torch.long)
        rows.append(torch.cat([torch.tensor([2]), genes, torch.tensor([3]), padding]))
    input_ids = torch.stack(rows)
    attention_mask = (input_ids != 0).long()
    corrupted, selected = masking(input_ids, attention_mask, generator)

    assert not selected[(input_ids < 4)].any()  # <pad>, <cls>, <eos> never selected
    for cell in range(len(rows)):
        for token_range in (range(4 + 12 * k, 16 + 12 * k) for k in range(20)):
            in_set = torch.isin(input_ids[cell], torch.tensor(list(token_range)))
            if in_set.any():
                assert selected[cell, in_set].all() or not selected[cell, in_set].any()  # whole set or none
    share = selected.sum().item() / (attention_mask.sum().item() - 2 * len(rows))
    assert 0.10 < share < 0.20  # about mask_probability, set by set
    sets_chosen = sum(selected[cell, torch.isin(input_ids[cell], torch.arange(4, 244))].any().item()
                      for cell in range(len(rows)))
    assert sets_chosen > 0.5 * len(rows)  # whole sets, not only the genes outside every set
    assert torch.equal(corrupted[~selected], input_ids[~selected])
    assert (corrupted[selected] == 1).float().mean().item() > 0.7  # then the 80/10/10 corruption


def test_gene_sets_map_versioned_ids_and_symbols_and_refuse_bad_files(tmp_path):
    vocabulary = {**SPECIALS, "ENSG00000141510": 4, "ENSG00000012048": 5, "ENSG00000139618": 6}
    sets = read_gmt(write_gmt(tmp_path / "sets.gmt", {"p53": ["ENSG00000141510.17", "BRCA1"], "none": ["XYZ"]}))
    gene_sets = gene_sets_for_vocabulary(sets, vocabulary, "sets.gmt")
    assert gene_sets.names == ["p53"]  # the set without a vocabulary gene is dropped
    membership = gene_sets.membership.to_dense()
    assert membership.shape == (2, 7)  # p53, then ENSG00000139618 as a set of its own
    assert membership[0].nonzero().ravel().tolist() == [4, 5]  # TP53 (versioned id) and BRCA1 (symbol)
    assert membership[1].nonzero().ravel().tolist() == [6]
    (tmp_path / "bad.gmt").write_text("only_a_name\n")
    with pytest.raises(InputError, match="line 1"):
        read_gmt(tmp_path / "bad.gmt")
    with pytest.raises(InputError, match="no gene set"):
        gene_sets_for_vocabulary({"none": ["XYZ"]}, vocabulary, "sets.gmt")
    with pytest.raises(InputError, match="gene set file"):
        build_masking(replace(SETTINGS, strategy="pathway"), vocabulary)


def test_dynamic_schedule_decays_from_high_to_low_and_constant_stays():
    linear = replace(SETTINGS, schedule="linear")
    rates = [masking_rate(linear, progress / 10) for progress in range(11)]
    assert rates[0] == pytest.approx(0.3) and rates[-1] == pytest.approx(0.1)
    assert all(later < earlier for earlier, later in zip(rates, rates[1:]))
    assert masking_rate(linear, 1.5) == pytest.approx(0.1)  # clipped past the end
    assert {masking_rate(SETTINGS, progress / 10) for progress in range(11)} == {0.15}
    held_out = evaluation_settings(replace(linear, strategy="pathway"))
    assert (held_out.strategy, held_out.schedule, held_out.mask_probability) == ("random", "constant", 0.15)


def test_corruption_fractions_over_one_refused():
    with pytest.raises(InputError, match="sum to at most 1"):
        build_masking(replace(SETTINGS, mask_token_fraction=0.9, random_token_fraction=0.2), VOCABULARY)
