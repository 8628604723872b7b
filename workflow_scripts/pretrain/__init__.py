"""Stage `pretrain` (rules/pretrain.smk): masked-LM pretraining of the embedded default model."""
