"""Stage `ablation` (rules/ablation.smk): pretraining variants and their downstream scores."""
