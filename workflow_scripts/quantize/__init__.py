"""Stage `quantize` (rules/quantize.smk): int8 / bf16 / fp16 variants of fine-tuned models, size and speed."""
