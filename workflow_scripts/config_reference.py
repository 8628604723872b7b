"""The per-key tables of config/README.md, generated from workflow_scripts/core/schema.yaml.

`python -m workflow_scripts.config_reference config/README.md` rewrites the part of the file between
the two markers below; the rest of the file is written by hand. tests/test_config_reference.py fails
when that part no longer matches the schema.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

SCHEMA = Path(__file__).parent / "core" / "schema.yaml"
BEGIN = "<!-- BEGIN generated from workflow_scripts/core/schema.yaml by python -m workflow_scripts.config_reference -->"
END = "<!-- END generated -->"
NAME = "NAME"  # a key the user chooses (a dataset's, an experiment's, a method's name)


def _inlined(node: Any, definitions: dict[str, Any]) -> Any:
    """The schema with every $ref replaced by its definition (the referring node's own keys win)."""
    if isinstance(node, list):
        return [_inlined(item, definitions) for item in node]
    if not isinstance(node, dict):
        return node
    while "$ref" in node:
        base = definitions[node["$ref"].rsplit("/", 1)[1]]
        node = {**base, **{key: value for key, value in node.items() if key != "$ref"}}
    return {key: _inlined(value, definitions) for key, value in node.items()}


def _code(value: Any) -> str:
    return f"`{value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)}`"


def _type(node: dict[str, Any]) -> str:
    if "const" in node:
        return _code(node["const"])
    if "enum" in node:
        kinds = {"string" if isinstance(value, str) else "number" for value in node["enum"]}
        return " or ".join(sorted(kinds))
    alternatives = node.get("oneOf") or node.get("anyOf")
    if alternatives:
        return " or ".join(dict.fromkeys(_type(alternative) for alternative in alternatives))
    kinds = node.get("type", "object" if "properties" in node or "additionalProperties" in node else "any")
    kinds = kinds if isinstance(kinds, list) else [kinds]
    names = {"object": "mapping", "array": "list", "number": "number", "integer": "integer", "string": "string",
             "boolean": "boolean", "null": "null"}
    text = " or ".join(names.get(kind, kind) for kind in kinds)
    items = node.get("items")
    return f"{text} of {_type(items)}" if items and "array" in kinds else text


def _range(node: dict[str, Any]) -> str:
    """Values the schema allows beyond the type: bounds, choices, pattern, list lengths."""
    parts = []
    if "enum" in node:
        parts.append(", ".join(_code(value) for value in node["enum"]))
    bounds = [("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="), ("exclusiveMaximum", "<")]
    parts += [f"{sign} {node[key]}" for key, sign in bounds if key in node]
    if "pattern" in node:
        parts.append(f"matches `{node['pattern']}`")
    if "minItems" in node:
        parts.append(f"at least {node['minItems']} item{'s' * (node['minItems'] > 1)}")
    if node.get("uniqueItems"):
        parts.append("no repeats")
    if "minProperties" in node:
        parts.append(f"at least {node['minProperties']} entry")
    for alternative in node.get("oneOf") or node.get("anyOf") or []:
        parts += [part for part in [_range(alternative)] if part]
    items = node.get("items")
    if isinstance(items, dict) and _range(items):
        parts.append(f"each {_range(items)}")
    return "; ".join(parts)


def _cell(text: str) -> str:
    """Text for a table cell: one line, pipes escaped, `<cls>` and the like shown rather than read as HTML."""
    one_line = re.sub(r"\s+", " ", text).strip().replace("|", "\\|")
    return re.sub(r"<(?=[A-Za-z/])", "&lt;", one_line)


def _rows(path: str, node: dict[str, Any], top: bool = False) -> list[str]:
    """Table rows of a node and the keys below it: leaves always, a mapping where it has a description."""
    properties = node.get("properties", {})
    per_name = node.get("additionalProperties")
    rows = []
    if not top and (node.get("description") or not (properties or isinstance(per_name, dict))):
        default = _code(node["default"]) if "default" in node else ("required" if node.get("_required") else "")
        rows.append(f"| `{path}` | {_type(node)} | {default} | {_cell(_range(node))} | "
                    f"{_cell(node.get('description', ''))} |")
    required = set(node.get("required", []))
    for key, child in properties.items():
        rows += _rows(f"{path}.{key}", {**child, "_required": key in required})
    if isinstance(per_name, dict):
        rows += _rows(f"{path}.{NAME}", per_name)
    return rows


def reference_tables(schema: dict[str, Any]) -> str:
    """One section per top-level key: its description, then a row per key below it."""
    schema = _inlined(schema, schema.get("definitions", {}))
    header = ["| key | type | default | allowed | meaning |", "|---|---|---|---|---|"]
    parts = [BEGIN]
    for section, node in schema["properties"].items():
        intro = _cell(node.get("description", "")).rstrip(".")
        intro = (intro[:1].upper() + intro[1:] + ". ") if intro else ""
        intro += "Required." if section in schema.get("required", []) else ""
        parts += ["", f"### `{section}`", ""] + ([intro.strip(), ""] if intro else [])
        top = bool(node.get("properties") or isinstance(node.get("additionalProperties"), dict))
        parts += header + _rows(section, node, top=top)
    return "\n".join(parts + ["", END])


def updated(text: str, schema: dict[str, Any]) -> str:
    """The README text with its generated part replaced."""
    start, end = text.index(BEGIN), text.index(END) + len(END)
    return text[:start] + reference_tables(schema) + text[end:]


def main(readme: str) -> None:
    path = Path(readme)
    path.write_text(updated(path.read_text(), yaml.safe_load(SCHEMA.read_text())))


if __name__ == "__main__":
    main(*sys.argv[1:])
