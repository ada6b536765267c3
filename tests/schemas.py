"""Validate records against the project's JSON Schemas."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from jsonschema import Draft202012Validator

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"


@lru_cache
def validator(name: str) -> Draft202012Validator:
    schema = json.loads((SCHEMAS / f"{name}.schema.json").read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def assert_valid(name: str, record: dict) -> None:
    errors = sorted(validator(name).iter_errors(record), key=str)
    assert not errors, f"{name}: {[e.message for e in errors[:3]]}"
