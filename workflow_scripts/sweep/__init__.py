"""The training-size sweep: one gene task fine-tuned on fewer and fewer training cells (rules/sweep.smk)."""
