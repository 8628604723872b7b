import sys

from .process_tuning import tune_process

if __name__ == "__main__":
    settings = tune_process()  # before any command imports numpy
    from .cli import main

    sys.exit(main(process_settings=settings))
