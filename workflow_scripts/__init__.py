"""Geneformer fine-tuning workflow: the logic behind every Snakemake rule."""
