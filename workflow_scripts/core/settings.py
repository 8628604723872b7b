"""Typed settings: a schema section a job reads, as a frozen dataclass parsed once.

The schema (core/schema.yaml) is the one place that states defaults and ranges; Snakemake validates
the whole config against it before any job is planned. A Settings class names the keys of one
section and gives them types, so a job reads `settings.learning_rate`, never a dict key. Parsing
checks that the keys are exactly the class's fields: a misspelt or missing key stops at parse time,
with its name, not as a KeyError in fold 3. It does not re-check ranges the schema enforces.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Mapping
from typing import Any, Self

from .errors import InputError


@dataclasses.dataclass(frozen=True)
class Settings:
    """Base of every stage's settings: subclass with fields named as the section's keys."""

    @classmethod
    def from_config(cls, section: Mapping[str, Any], where: str = "settings") -> Self:
        """The section (as validated and filled by the schema) as this class; `where` names it in errors."""
        if not isinstance(section, Mapping):
            raise InputError(where, f"is a {type(section).__name__}, not a mapping of settings",
                             f"give the keys of {cls.__name__}")
        names = [field.name for field in dataclasses.fields(cls)]
        unknown = sorted(set(section) - set(names))
        if unknown:
            raise InputError(f"{where}.{unknown[0]}", f"is not a setting of {cls.__name__}",
                             f"use one of {names} (config/README.md lists every key)")
        missing = [name for name in names if name not in section]
        if missing:
            raise InputError(f"{where}.{missing[0]}", f"is missing from {cls.__name__}",
                             "pass the whole section as the schema fills it (core/schema.yaml gives defaults)")
        hints = typing.get_type_hints(cls)
        return cls(**{name: _parsed(hints[name], section[name], f"{where}.{name}") for name in names})

    @classmethod
    def from_json(cls, text: str, where: str = "settings") -> Self:
        """The settings a rule passed as one JSON argument."""
        try:
            section = json.loads(text)
        except json.JSONDecodeError as error:
            raise InputError(where, f"is not JSON: {error}", "pass the settings as the rule writes them") from None
        return cls.from_config(section, where)

    def as_dict(self) -> dict[str, Any]:
        """Plain values (nested settings as dicts), e.g. for a fingerprint or a JSON record."""
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), sort_keys=True)


@dataclasses.dataclass(frozen=True)
class FoldModel(Settings):
    """One fine-tuned fold's model, as embeddings.finetuned and perturbation.model name it (shared by
    the stages that read a fine-tuned model)."""

    experiment: str
    method: str
    fold: int

    @property
    def directory(self) -> str:
        """Where fine-tuning saved it."""
        return f"results/{self.experiment}/{self.method}/fold_{self.fold}/model"


def _is_settings(hint: Any) -> bool:
    return isinstance(hint, type) and issubclass(hint, Settings)


def _parsed(hint: Any, value: Any, where: str) -> Any:
    """A value as its annotation says: nested settings (alone, optional, in a dict or a list) parsed,
    anything else kept as the schema gave it."""
    origin, arguments = typing.get_origin(hint), typing.get_args(hint)
    if _is_settings(hint):
        return hint.from_config(value, where)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in arguments:
            return None
        nested = [argument for argument in arguments if _is_settings(argument)]
        return nested[0].from_config(value, where) if nested and isinstance(value, Mapping) else value
    if origin is dict and len(arguments) == 2 and _is_settings(arguments[1]) and isinstance(value, Mapping):
        return {key: arguments[1].from_config(item, f"{where}.{key}") for key, item in value.items()}
    if origin is list and arguments and _is_settings(arguments[0]) and isinstance(value, list):
        return [arguments[0].from_config(item, f"{where}[{index}]") for index, item in enumerate(value)]
    return value
