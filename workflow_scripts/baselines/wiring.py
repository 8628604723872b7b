"""What the baselines' rules (rules/baselines.smk) read from the validated config."""

from __future__ import annotations

from typing import Any

from ..core.config import method_settings
from ..core.wiring import as_json


class BaselineWiring:
    """Params functions of baseline_fold."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    def settings(self, wildcards) -> str:
        """The method's BaselineSettings as JSON: its kind and the kind's `baselines` section."""
        entry = method_settings(self.config, wildcards.experiment, wildcards.method)
        return as_json({"kind": entry["kind"], "options": entry["baseline"]})
