"""Start Rasa's own CLI (``python -m bot.rasa_server run ...``) after applying SchoolGuide's speed fixes.

Each fix replaces one Rasa 3.6 function with one that gives the same result faster; each has a test in
tests/test_rasa_server.py proving the behaviour is unchanged. ``schoolguide run``, the tests' stack and
``make bench`` all start the Rasa server through here.

* ``RemoteAction._validate_action_result``: Rasa calls ``jsonschema.validate`` on every action server reply,
  and that function first re-checks the (constant) schema against the JSON-Schema meta-schema. Profiling put
  that check at ~40% of the server's time per message (tens of milliseconds on 2 cores). The fix checks the
  schema once and reuses one validator; replies are validated exactly as before, with the same error text.
* ``Event.resolve_by_type``: loading a tracker from the SQL tracker store turns each stored event back into an
  object, and for every event Rasa walks the whole ``Event`` class tree (~30 recursive calls) to find the
  class for its type name: ~15 ms per message, growing with the conversation. The fix remembers the class
  found for each type name (the first match, as before); unknown names still take Rasa's own path.
"""

from __future__ import annotations

import sys
from functools import lru_cache
from typing import Any


@lru_cache(maxsize=1)
def _action_result_validator() -> Any:
    from jsonschema.validators import validator_for
    from rasa.core.actions.action import RemoteAction

    schema = RemoteAction.action_response_format_spec()
    cls = validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def _validate_action_result(self: Any, result: dict[str, Any]) -> bool:
    from jsonschema import ValidationError, exceptions
    from rasa.shared.constants import DOCS_BASE_URL

    error = exceptions.best_match(_action_result_validator().iter_errors(result))
    if error is None:
        return True
    if not isinstance(error, ValidationError):  # pragma: no cover - best_match only yields ValidationErrors
        raise error
    error.message += (
        ". Failed to validate Action server response from API, "
        "make sure your response from the Action endpoint is valid. "
        "For more information about the format visit "
        f"{DOCS_BASE_URL}/custom-actions"
    )
    raise error


_EVENT_CLASSES: dict[str, Any] = {}


def _resolve_by_type(type_name: str, default: Any = None) -> Any:
    found = _EVENT_CLASSES.get(type_name)
    if found is None:
        found = _ORIGINAL_RESOLVE(type_name, default)
        if found is not None and found is not default:
            _EVENT_CLASSES[type_name] = found
    return found


_ORIGINAL_RESOLVE: Any = None


def apply_speedups() -> None:
    """Install the fixes (idempotent)."""
    global _ORIGINAL_RESOLVE
    from rasa.core.actions.action import RemoteAction
    from rasa.shared.core.events import Event

    RemoteAction._validate_action_result = _validate_action_result
    if Event.resolve_by_type is not _resolve_by_type:
        _ORIGINAL_RESOLVE = Event.resolve_by_type
        Event.resolve_by_type = staticmethod(_resolve_by_type)


def main(argv: list[str] | None = None) -> None:
    apply_speedups()
    from rasa.__main__ import main as rasa_main

    sys.argv = ["rasa", *(sys.argv[1:] if argv is None else argv)]
    rasa_main()


if __name__ == "__main__":
    main()
