"""Stage `aggregate` (rules/aggregate.smk): tables across experiments, reported vs reproduced, run time."""
