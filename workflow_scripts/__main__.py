"""`python -m workflow_scripts COMMAND ...` and the `gfwf` console script: one start-up for both."""

import sys

from .core.process_tuning import tune_process


def run() -> int:
    """Tune the process for its CPU before any command imports numpy, then run the command."""
    settings = tune_process()
    from .cli import main

    return main(process_settings=settings)


if __name__ == "__main__":
    sys.exit(run())
