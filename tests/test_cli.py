"""The command line: arguments typed from the function signature; bad input exits 2 with the fix."""

import json

import pytest

from workflow_scripts.cli import build_parser, main
from workflow_scripts.core.sections import ChecksSettings, TokenizerSettings

TOKENIZER = {"model_input_size": 64, "special_tokens": True, "chunk_size": 10}
CHECKS = {"min_genes_in_vocabulary": 5, "min_genes_per_class": 10, "min_count_share_in_vocabulary": 0.5}
TOKENIZE = ["tokenize", "--h5ad-path", "a.h5ad", "--token-dictionary-tsv", "t.tsv", "--medians-tsv", "m.tsv",
            "--output-dir", "o", "--checks", json.dumps(CHECKS), "--obs-columns", json.dumps(["cell_type"])]


def test_types_from_signature():
    arguments = vars(build_parser("tokenize").parse_args([*TOKENIZE[1:], "--settings", json.dumps(TOKENIZER)]))
    assert arguments["settings"] == TokenizerSettings(model_input_size=64, special_tokens=True, chunk_size=10)
    assert arguments["checks"] == ChecksSettings(min_genes_in_vocabulary=5, min_genes_per_class=10, min_count_share_in_vocabulary=0.5)
    assert arguments["obs_columns"] == ["cell_type"] and arguments["threads"] == 1


@pytest.mark.parametrize(("settings", "named"), [
    ({**{k: v for k, v in TOKENIZER.items() if k != "special_tokens"}, "special_token": True},
     "--settings.special_token: is not a setting of TokenizerSettings"),
    ({k: v for k, v in TOKENIZER.items() if k != "chunk_size"}, "--settings.chunk_size: is missing"),
])
def test_misspelt_or_missing_settings_key_stops_at_parse_time(tmp_path, capsys, settings, named):
    """The job stops before reading any input (a.h5ad does not exist), naming the key."""
    assert main([*TOKENIZE, "--settings", json.dumps(settings)]) == 2
    assert named in capsys.readouterr().err


def test_optional_paths_may_be_left_out():
    arguments = vars(build_parser("reference").parse_args([
        "--settings", json.dumps({"medians": "geneformer_v1", "token_dictionary": "geneformer_v1"}),
        "--tokenizer", json.dumps(TOKENIZER), "--output-token-dictionary", "t.tsv", "--output-medians", "m.tsv"]))
    assert arguments["computed_medians_tsv"] is None


def test_bad_input_exits_2_with_message(tmp_path, capsys):
    code = main(["medians", "--h5ad-path", str(tmp_path / "missing.h5ad"), "--output-tsv", str(tmp_path / "m.tsv"),
                 "--tokenizer", json.dumps(TOKENIZER)])
    assert code == 2
    assert "missing.h5ad" in capsys.readouterr().err
    assert not (tmp_path / "m.tsv").exists()
