"""Schemathesis hooks for the fuzz run (loaded through SCHEMATHESIS_HOOKS).

Every other request with path parameters is sent to real resources of the fuzzed tenant
(ids read from OUTDIAL_FUZZ_IDS), so the code behind a found resource is fuzzed too, in every
phase. DELETE aims at spare resources, so the main ones survive for the other operations.
"""

from __future__ import annotations

import itertools
import json
import os
from typing import Any

import schemathesis

IDS: dict[str, dict[str, str]] = json.loads(os.environ.get("OUTDIAL_FUZZ_IDS", "{}"))
_calls = itertools.count()


@schemathesis.hook
def before_call(
    context: schemathesis.HookContext, case: schemathesis.Case, kwargs: dict[str, Any]
) -> None:
    if not isinstance(case.path_parameters, dict) or not case.path_parameters:
        return
    if next(_calls) % 2:
        return
    known = IDS.get("spare" if case.method.upper() == "DELETE" else "main", {})
    for name in case.path_parameters:
        if name in known:
            case.path_parameters[name] = known[name]
