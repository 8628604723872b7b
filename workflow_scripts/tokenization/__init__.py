"""Stage `tokenization` (rules/tokenization.smk): rank-value encoding into Geneformer's `datasets` format."""
