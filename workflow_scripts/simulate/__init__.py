"""Stage `simulate` (rules/simulate.smk): the embedded default's seeded datasets and their planted truth."""
