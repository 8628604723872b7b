"""The command line: arguments typed from the function signature; bad input exits 2 with the fix."""

import json

from workflow_scripts.cli import build_parser, main


def test_types_from_signature():
    arguments = vars(build_parser("tokenize").parse_args([
        "--h5ad-path", "a.h5ad", "--token-dictionary-tsv", "t.tsv", "--medians-tsv", "m.tsv", "--output-dir", "o",
        "--model-input-size", "64", "--special-tokens", "true", "--chunk-size", "10",
        "--obs-columns", json.dumps(["cell_type"]), "--min-genes-in-vocabulary", "5"]))
    assert arguments["model_input_size"] == 64 and arguments["special_tokens"] is True
    assert arguments["obs_columns"] == ["cell_type"]


def test_optional_paths_may_be_left_out():
    arguments = vars(build_parser("reference").parse_args([
        "--medians-source", "geneformer_v1", "--token-dictionary-source", "geneformer_v1", "--special-tokens", "false",
        "--output-token-dictionary", "t.tsv", "--output-medians", "m.tsv"]))
    assert arguments["computed_medians_tsv"] is None


def test_bad_input_exits_2_with_message(tmp_path, capsys):
    code = main(["medians", "--h5ad-path", str(tmp_path / "missing.h5ad"), "--output-tsv", str(tmp_path / "m.tsv"),
                 "--chunk-size", "10"])
    assert code == 2
    assert "missing.h5ad" in capsys.readouterr().err
    assert not (tmp_path / "m.tsv").exists()
