"""Stage `baselines` (rules/baselines.smk): simple classifiers scored in the same folds as the models."""
