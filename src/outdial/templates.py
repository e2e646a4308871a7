"""Per-recipient message templates, rendered in a Jinja2 sandbox that cannot be made to blow up.

Templates are written by API users and rendered once per recipient, so besides Jinja's
sandbox (no attribute tricks, no mutation) rendering must stay small and quick whatever the
template says: no loops, macros or includes; no string formatting or padding; repetition
(`*`) and powers capped; only filters that cannot grow their input.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from typing import Any

from jinja2 import StrictUndefined, TemplateError, nodes
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

MAX_OUTPUT = 10_000
SAFE_FILTERS = frozenset(
    {
        "abs",
        "capitalize",
        "count",
        "d",
        "default",
        "first",
        "float",
        "int",
        "join",
        "last",
        "length",
        "lower",
        "max",
        "min",
        "replace",
        "round",
        "string",
        "title",
        "trim",
        "truncate",
        "upper",
        "wordcount",
    }
)
SAFE_METHODS = frozenset(
    {
        "capitalize",
        "endswith",
        "isdigit",
        "lower",
        "lstrip",
        "rstrip",
        "split",
        "startswith",
        "strip",
        "title",
        "upper",
    }
)
FORBIDDEN_NODES = (
    nodes.For,
    nodes.Macro,
    nodes.CallBlock,
    nodes.FilterBlock,
    nodes.Import,
    nodes.FromImport,
    nodes.Include,
    nodes.Extends,
    nodes.Block,
)


class TemplateProblem(ValueError):
    pass


def _bounded(value: Any) -> Any:
    if isinstance(value, str | list | tuple) and len(value) > MAX_OUTPUT:
        raise SecurityError(f"a value grew beyond {MAX_OUTPUT} characters")
    return value


class MessageSandbox(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "%"})

    def call_binop(self, context: Context, operator_: str, left: Any, right: Any) -> Any:
        if operator_ == "%":
            raise SecurityError("the % operator is not allowed in templates")
        if operator_ == "**":
            if abs(right) > 64 or abs(left) > 10**6:
                raise SecurityError("powers are limited in templates")
            return left**right
        sized = next((v for v in (left, right) if isinstance(v, str | list | tuple)), None)
        count = right if sized is left else left
        if sized is not None and isinstance(count, int) and len(sized) * count > MAX_OUTPUT:
            raise SecurityError(f"repetition beyond {MAX_OUTPUT} characters")
        return operator.mul(left, right)

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if callable(value) and attr not in SAFE_METHODS:
            return False
        return bool(super().is_safe_attribute(obj, attr, value))


def _replace(value: Any, old: str, new: str, count: int | None = None) -> str:
    return str(_bounded(str(value).replace(old, new, -1 if count is None else count)))


_environment = MessageSandbox(undefined=StrictUndefined, autoescape=False)
_environment.filters = {name: f for name, f in _environment.filters.items() if name in SAFE_FILTERS}
_environment.filters["replace"] = _replace
_environment.globals = {}


def compile_template(source: str) -> Any:
    """A compiled template, or TemplateProblem naming what is wrong or not allowed."""
    try:
        parsed = _environment.parse(source)
        for kind in FORBIDDEN_NODES:
            if next(parsed.find_all(kind), None) is not None:
                raise TemplateProblem(
                    f"{kind.__name__.lower()} blocks are not allowed in templates"
                )
        return _environment.from_string(parsed)
    except TemplateError as exc:
        raise TemplateProblem(f"template syntax error: {exc}") from None


def render(template: Any, variables: Mapping[str, Any]) -> str:
    """Render a compiled template; a missing variable without `| default(…)` is an error."""
    try:
        return str(_bounded(template.render(**variables)))
    except TemplateError as exc:
        raise TemplateProblem(str(exc)) from None
    except (ArithmeticError, TypeError, ValueError, LookupError, AttributeError) as exc:
        raise TemplateProblem(f"{type(exc).__name__}: {exc}") from None


def variables_for(phone_number: str, metadata: Mapping[str, Any]) -> dict[str, Any]:
    return {**metadata, "phone_number": phone_number}
