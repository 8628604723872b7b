"""Stage `embeddings` (rules/embeddings.smk): cell and gene embeddings, their scores and UMAPs."""
