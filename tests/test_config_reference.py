"""config/README.md's per-key tables are the schema's: generated, and checked to be up to date."""

from __future__ import annotations

import yaml
from conftest import REPO

from workflow_scripts.config_reference import (
    BEGIN,
    END,
    SCHEMA,
    reference_tables,
    updated,
)


def test_config_readme_matches_the_schema():
    text = (REPO / "config/README.md").read_text()
    assert updated(text, yaml.safe_load(SCHEMA.read_text())) == text, (
        "config/README.md is out of date: run `python -m workflow_scripts.config_reference config/README.md`")


def test_every_schema_key_has_a_row():
    text = (REPO / "config/README.md").read_text()
    schema = yaml.safe_load(SCHEMA.read_text())
    for section, node in schema["properties"].items():
        assert f"### `{section}`" in text, section
    for key in ("seed", "finetuning.learning_rate", "datasets.NAME.files.NAME.sha256", "resources.finetune.gpu_model",
                "experiments.NAME.methods.NAME.kind", "pretraining.masking.schedule"):
        assert f"| `{key}` |" in text, key


def test_rows_give_type_default_range_and_meaning_through_refs():
    schema = {
        "definitions": {"fraction": {"type": "number", "minimum": 0, "maximum": 1}},
        "required": ["jobs"],
        "properties": {
            "knobs": {"type": "object", "description": "small knobs", "properties": {
                "rate": {"$ref": "#/definitions/fraction", "default": 0.5, "description": "a <mask> share | half"},
                "mode": {"enum": ["a", "b"], "default": "a"},
                "sizes": {"type": "array", "items": {"type": "integer", "minimum": 1}, "minItems": 1, "default": [8]},
            }},
            "jobs": {"type": "object", "additionalProperties": {
                "type": "object", "required": ["kind"], "properties": {"kind": {"type": "string"}}}},
        },
    }
    tables = reference_tables(schema)
    assert tables.startswith(BEGIN) and tables.endswith(END)
    assert "Small knobs." in tables and "### `jobs`\n\nRequired." in tables
    assert "| `knobs.rate` | number | `0.5` | >= 0; <= 1 | a &lt;mask> share \\| half |" in tables
    assert "| `knobs.mode` | string | `a` | `a`, `b` |  |" in tables
    assert "| `knobs.sizes` | list of integer | `[8]` | at least 1 item; each >= 1 |  |" in tables
    assert "| `jobs.NAME.kind` | string | required |  |  |" in tables
