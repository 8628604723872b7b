"""Stage `finetune` (rules/finetune.smk): one fine-tuning job per experiment, method and fold."""
