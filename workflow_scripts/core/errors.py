"""One exception type for bad input, so every refusal reads the same way."""


class InputError(Exception):
    """Bad input found before any long job: the message names the input and the fix."""

    def __init__(self, source: str, problem: str, fix: str) -> None:
        self.source = source
        self.problem = problem
        self.fix = fix
        super().__init__(f"{source}: {problem}\n  fix: {fix}")
