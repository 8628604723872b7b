"""Stage `prepare` (rules/prepare.smk): verified downloads and real datasets turned into canonical raw-count h5ad."""
