"""Stage `perturb` (rules/perturb.smk): in silico deletion and overexpression, and the planted-truth table."""
