"""Every exception freshstream defines is a FreshstreamError, so the CLI has one place that
says any of them in one line; the few that never leave their module are listed with the reason."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

from streams.errors import (BrokerError, FreshstreamError, IntegrationError, SettingsError, SimulationError,
                            UsageError)

ROOT = Path(__file__).resolve().parent.parent

# Not user errors: each is caught where it is raised, or is an answer to an HTTP client.
NEVER_REACH_A_USER = {
    "connectors.freshchat.client._Retry": "control flow of the retry loop; ends as a FreshchatError",
    "connectors.ingress.handlers.Rejected": "an HTTP answer to a webhook sender (status and JSON body)",
    "connectors.ingress.signature.PublicKeyError": "caught by its callers: a UsageError in `integrations add`, "
                                                   "a refused request in the ingress",
    "streams.domain.envelope.InvalidJSON": "a 400 answer to a webhook sender",
    "streams.domain.envelope.InvalidEvent": "a 400 answer to a webhook sender",
}


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


def exception_classes() -> dict[str, type]:
    """Classes defined in connectors/ and streams/ that derive from BaseException, by dotted name.

    Only modules with a class whose base looks like an exception are imported (the others may
    need optional extras, rocksdict say)."""
    found = {}
    for path in sorted([*(ROOT / "connectors").rglob("*.py"), *(ROOT / "streams").rglob("*.py")]):
        classes = [node for node in ast.parse(path.read_text()).body if isinstance(node, ast.ClassDef)]
        if not any(_looks_like_exception(base) for node in classes for base in node.bases):
            continue
        module = importlib.import_module(_module_name(path))
        for node in classes:
            cls = getattr(module, node.name)
            if isinstance(cls, type) and issubclass(cls, BaseException):
                found[f"{module.__name__}.{node.name}"] = cls
    return found


def _looks_like_exception(base: ast.expr) -> bool:
    name = base.attr if isinstance(base, ast.Attribute) else getattr(base, "id", "")
    return name.endswith(("Error", "Exception"))


def test_every_error_class_subclasses_freshstream_error():
    classes = exception_classes()
    outside = sorted(name for name, cls in classes.items()
                     if not issubclass(cls, FreshstreamError) and name not in NEVER_REACH_A_USER)
    assert outside == [], "derive from streams.errors.FreshstreamError (or say why not in NEVER_REACH_A_USER)"
    assert {"streams.errors.SettingsError", "connectors.freshchat.client.FreshchatAuthError"} <= set(classes)


def test_the_exceptions_listed_as_internal_still_exist():
    assert set(NEVER_REACH_A_USER) <= set(exception_classes())


def test_the_kinds_of_error_are_distinct_subclasses_of_one_base():
    kinds = (SettingsError, UsageError, BrokerError, IntegrationError, SimulationError)
    assert all(issubclass(kind, FreshstreamError) for kind in kinds)
    assert not any(issubclass(a, b) for a in kinds for b in kinds if a is not b)
