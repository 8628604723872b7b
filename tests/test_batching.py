import numpy as np
import pytest

from workflow_scripts.core.batching import (
    RaggedTokens,
    dataset_rows,
    inference_batches,
    length_grouped_batches,
)
from workflow_scripts.core.errors import InputError


def ragged(lengths, seed=0):
    rng = np.random.default_rng(seed)
    lengths = np.asarray(lengths)
    return RaggedTokens(rng.integers(2, 100, lengths.sum()), np.concatenate([[0], np.cumsum(lengths)]))


def test_padded_batch_pads_to_longest_cell_only():
    tokens = ragged([3, 7, 5])
    input_ids, mask = tokens.padded(np.array([2, 0]))
    assert input_ids.shape == (2, 5)  # longest of the two, not of the dataset
    assert mask.sum(axis=1).tolist() == [5, 3]
    assert input_ids[0].tolist() == tokens.values[10:15].tolist()
    assert input_ids[1, :3].tolist() == tokens.values[0:3].tolist()
    assert input_ids[1, 3:].tolist() == [0, 0]


def test_subset_keeps_rows_in_order():
    tokens = ragged([2, 4, 1, 3])
    subset = tokens.subset(np.array([3, 1]))
    assert subset.lengths.tolist() == [3, 4]
    assert subset.values.tolist() == tokens.values[7:10].tolist() + tokens.values[2:6].tolist()


def test_length_grouped_batches_cover_every_cell_once_and_reduce_padding():
    rng = np.random.default_rng(1)
    lengths = rng.integers(10, 500, 2000)
    batches = length_grouped_batches(lengths, 16, np.random.default_rng(2), megabatch_factor=20)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(2000))
    padded_grouped = sum(len(b) * lengths[b].max() for b in batches)
    random_batches = np.array_split(rng.permutation(2000), len(batches))
    padded_random = sum(len(b) * lengths[b].max() for b in random_batches)
    assert padded_grouped < 0.75 * padded_random


def test_length_grouped_batches_are_seeded():
    lengths = np.arange(100)
    first = length_grouped_batches(lengths, 8, np.random.default_rng(5))
    second = length_grouped_batches(lengths, 8, np.random.default_rng(5))
    assert all((a == b).all() for a, b in zip(first, second))


def test_inference_batches_sorted_by_length():
    lengths = np.array([5, 1, 9, 3])
    batches = inference_batches(lengths, 2)
    assert [b.tolist() for b in batches] == [[2, 0], [3, 1]]


def test_dataset_rows_follow_the_wanted_order_and_refuse_unknown_cells():
    rows = dataset_rows(["c0", "c1", "c2"], ["c2", "c0"], "folds.tsv", "rebuild")
    assert rows.tolist() == [2, 0]
    with pytest.raises(InputError, match="folds.tsv: 1 of its cells are not in the tokenized dataset"):
        dataset_rows(["c0", "c1"], ["c1", "c9"], "folds.tsv", "rebuild")
