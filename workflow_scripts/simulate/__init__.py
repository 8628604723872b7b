"""Stage `simulate` (rules/simulate.smk): the embedded default's seeded datasets and their planted truth.

world.py draws the shared world (genes, programs, dosage genes) from the seed; cells.py holds the
count model and the per-cell draws builders share; datasets/ has one builder per dataset;
core/truths.py registers every planted truth (shared with the perturbation tables that read them);
simulator.py writes the files.
"""
