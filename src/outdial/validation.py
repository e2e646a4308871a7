"""Turn a pydantic ValidationError raised inside a service into a 422 in FastAPI's shape."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import ValidationError

from outdial.errors import Invalid


def invalid_from(exc: ValidationError, prefix: Sequence[str | int]) -> Invalid:
    problems = [
        {"loc": [*prefix, *error["loc"]], "msg": error["msg"], "type": error["type"]}
        for error in exc.errors(include_url=False, include_context=False, include_input=False)
    ]
    return Invalid.many(problems)
