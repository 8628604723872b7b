"""Shared pieces every stage imports (errors, config and settings, atomic outputs, count files, dictionaries,
tokenized batches, models, devices, the training loop, metrics, figure style); core never imports a stage."""
