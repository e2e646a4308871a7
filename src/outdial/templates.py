"""Per-recipient message templates, rendered in Jinja2's sandbox."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

_environment = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False)


class TemplateProblem(ValueError):
    pass


def compile_template(source: str) -> Any:
    try:
        return _environment.from_string(source)
    except TemplateError as exc:
        raise TemplateProblem(f"template syntax error: {exc}") from None


def render(template: Any, variables: Mapping[str, Any]) -> str:
    """Render a compiled template; a missing variable without `| default(…)` is an error."""
    try:
        return str(template.render(**variables))
    except TemplateError as exc:
        raise TemplateProblem(str(exc)) from None
    except (ArithmeticError, TypeError, ValueError, LookupError, AttributeError) as exc:
        raise TemplateProblem(f"{type(exc).__name__}: {exc}") from None


def variables_for(phone_number: str, metadata: Mapping[str, Any]) -> dict[str, Any]:
    return {**metadata, "phone_number": phone_number}
