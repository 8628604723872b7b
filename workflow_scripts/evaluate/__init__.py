"""Stage `evaluate` (rules/evaluate.smk): fold metrics, mean ± SD tables and the experiment figures."""
