"""Stage `preflight` (rules/preflight.smk): checks on every experiment's input, and its folds."""
