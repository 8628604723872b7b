"""Geneformer dictionaries: the restricted unpickler and the shipped TSV conversions."""

import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from workflow_scripts.core.dictionaries import (
    load_gene_name_dictionary,
    load_median_dictionary,
    load_token_dictionary,
    safe_load_pickle,
)
from workflow_scripts.core.errors import InputError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "geneformer_v1"


class Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_malicious_pickle_refused(tmp_path):
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"ENSG1": Exploit()}))
    with pytest.raises(InputError, match="refused global"):
        safe_load_pickle(path)


def test_numpy_scalars_become_python_values(tmp_path):
    path = tmp_path / "ok.pkl"
    path.write_bytes(pickle.dumps({"<pad>": np.int16(0), "ENSG1": np.float64(2.5)}))
    assert safe_load_pickle(path) == {"<pad>": 0, "ENSG1": 2.5}


def test_shipped_v1_dictionaries():
    tokens = load_token_dictionary("geneformer_v1_tokens")
    medians = load_median_dictionary("geneformer_v1_medians")
    names = load_gene_name_dictionary()
    assert (len(tokens), len(medians), len(names)) == (25426, 25424, 40248)
    assert tokens["<pad>"] == 0 and tokens["<mask>"] == 1


@pytest.mark.skipif(not SHARED.exists(), reason="the published pickles are only on the team's machines")
def test_shipped_tsvs_equal_the_published_pickles():
    assert safe_load_pickle(SHARED / "token_dictionary.pkl") == load_token_dictionary("geneformer_v1_tokens")
    assert safe_load_pickle(SHARED / "gene_median_dictionary.pkl") == load_median_dictionary("geneformer_v1_medians")
