"""The action server's entry point: Rasa SDK's own ``python -m rasa_sdk``, without TensorFlow.

The actions never use TensorFlow, JAX or PyTorch, but ``import spacy`` pulls them in: thinc (spaCy's ML layer)
imports whichever of them is installed to offer its shims, and Rasa installs TensorFlow. In the action server
that cost ~450 MiB of resident memory and ~4 s of start-up for nothing (reports/bench.md). Marking them absent
in ``sys.modules`` before anything imports spaCy makes thinc's ``import tensorflow`` fail, which thinc treats
as "not installed". The Rasa server, which does use TensorFlow, is not started through here.

Usage (as ``schoolguide run`` starts it): ``python -m bot.action_server --actions actions --port 5055``.
"""

from __future__ import annotations

import runpy
import sys

# Frameworks the actions never use; thinc imports them only if they can be imported.
NOT_IN_ACTION_SERVER = ("tensorflow", "jax", "torch")


def block_unused_frameworks() -> list[str]:
    """Make ``import tensorflow`` (and jax, torch) fail in this process; returns what was blocked.

    A framework already imported is left alone (blocking it then would break its users)."""
    blocked = []
    for name in NOT_IN_ACTION_SERVER:
        if name not in sys.modules:
            sys.modules[name] = None  # type: ignore[assignment]  # import raises ImportError
            blocked.append(name)
    return blocked


def main() -> None:
    block_unused_frameworks()
    sys.argv[0] = "rasa_sdk"
    runpy.run_module("rasa_sdk", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
