"""Stage `reference` (rules/reference.smk): gene medians of the corpus and the token / median dictionaries."""
