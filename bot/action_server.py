"""The action server's entry point: Rasa SDK's own ``python -m rasa_sdk``, without TensorFlow.

The actions never use TensorFlow, JAX or PyTorch, but ``import spacy`` pulls them in: thinc (spaCy's ML layer)
imports whichever of them is installed to offer its shims, and Rasa installs TensorFlow. In the action server
that cost ~400 MiB of resident memory and ~4 s of start-up for nothing (reports/bench.md). Marking them absent
in ``sys.modules`` before anything imports spaCy makes thinc's ``import tensorflow`` fail, which thinc treats
as "not installed". The Rasa server, which does use TensorFlow, is not started through here.

It also loads the safeguarding detector and the clause base before it serves. Loaded on first use, they held
up the first disclosure after a start by up to 10 s, and every other conversation with it: the actions run on
one event loop (reports/bench.md, the warm-up and c1 maxima).

It listens on ``SCHOOLGUIDE_BIND_HOST`` (default 127.0.0.1; ``--interface`` overrides it) rather than Rasa
SDK's 0.0.0.0, and answers only requests carrying the shared secret (bot/action_auth.py), attached through
Rasa SDK's own plugin hook for Sanic extensions. The same hook bounds request bodies to
``MAX_ACTION_REQUEST_BYTES`` instead of Sanic's 100 MB; a bigger one gets 413 without being read.

Usage (as ``schoolguide run`` starts it):
``python -m bot.action_server --interface 127.0.0.1 --actions actions --port 5055``.
"""

from __future__ import annotations

import argparse
import logging
import os
import runpy
import sys
import time

from bot.logging_filters import install_log_redaction

logger = logging.getLogger("bot.action_server")  # not "__main__" under python -m

# Frameworks the actions never use; thinc imports them only if they can be imported.
NOT_IN_ACTION_SERVER = ("tensorflow", "jax", "torch")
# The largest body the action server reads. Only the Rasa server gets this far (the secret is checked before
# a body is read), and it sends the domain (~9 KB) and the whole current session's tracker, which grows with
# the conversation: ~15 KB for one turn, ~1.7 MB for a busy hour (300 turns of 200 characters), ~8 MB for 300
# turns of 2,000 non-ASCII characters (JSON-escaped), measured in tests/security/test_request_size.py. A
# refused call loses that action's reply (the worker still reconciles a disclosure from the tracker store),
# so the bound is generous: twice the heaviest case measured, and well below Sanic's default of 100 MB.
MAX_ACTION_REQUEST_BYTES = 16 * 1024 * 1024


def block_unused_frameworks() -> list[str]:
    """Make ``import tensorflow`` (and jax, torch) fail in this process; returns what was blocked.

    A framework already imported is left alone (blocking it then would break its users)."""
    blocked = []
    for name in NOT_IN_ACTION_SERVER:
        if name not in sys.modules:
            sys.modules[name] = None  # type: ignore[assignment]  # import raises ImportError
            blocked.append(name)
    return blocked


def warm_up() -> bool:
    """Load the detector (spaCy pipeline, vocabulary) and the clause base now; True when both loaded.

    A failure is logged and serving goes on: the actions load them again on first use, and a disclosure is
    recorded even without the detector (actions/safeguarding.py)."""
    started = time.monotonic()
    try:
        from bot.knowledge import get_knowledge
        from bot.safeguarding.detector import assess

        assess("warm up")
        get_knowledge()
    except Exception:
        logger.exception("could not preload the safeguarding detector or clause base; loading on first use")
        return False
    logger.info("detector and clause base loaded in %.1f s", time.monotonic() - started)
    return True


def bound_request_size(app) -> None:
    """Read no body over ``MAX_ACTION_REQUEST_BYTES`` (``SANIC_REQUEST_MAX_SIZE`` overrides it); answer 413.

    Sanic refuses such a body on its Content-Length before reading it; without the handler below, Rasa SDK's
    catch-all exception handler would turn that into a 500 with an error and a traceback in the log."""
    from sanic import response
    from sanic.exceptions import PayloadTooLarge

    if not os.environ.get("SANIC_REQUEST_MAX_SIZE"):  # an operator's explicit choice wins
        app.config.REQUEST_MAX_SIZE = MAX_ACTION_REQUEST_BYTES

    @app.exception(PayloadTooLarge)
    async def _too_large(request, exception):  # noqa: ARG001
        logger.warning("refused %s %.80s: the body is over %d bytes", request.method, request.path,
                       app.config.REQUEST_MAX_SIZE)  # fmt: skip
        return response.json({"error": "the request body is too large"}, status=413)


def install_secret_check(secret: str) -> None:
    """Register the secret check (and the request size bound) as a Rasa SDK plugin: its
    ``attach_sanic_app_extensions`` hook is called on the app Rasa SDK is about to serve (rasa_sdk/endpoint.py
    run())."""
    import pluggy
    from rasa_sdk.plugin import plugin_manager

    from bot.action_auth import require_secret

    hookimpl = pluggy.HookimplMarker("rasa_sdk")

    class SecretPlugin:
        @hookimpl
        def attach_sanic_app_extensions(self, app) -> None:
            require_secret(app, secret)
            bound_request_size(app)

    plugin_manager().register(SecretPlugin(), name="schoolguide-action-secret")


def parse_interface(argv: list[str]) -> tuple[str | None, list[str]]:
    """Take ``-i/--interface HOST`` out of ``argv`` (Rasa SDK's own parser does not know it)."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("-i", "--interface")
    known, rest = parser.parse_known_args(argv)
    return known.interface, rest


def main() -> None:
    block_unused_frameworks()
    install_log_redaction("actions")  # no message text in any log (bot/logging_filters.py)
    # Rasa SDK sets up the root logger once it starts; until then this module logs on its own.
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-8s %(name)s  - %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False

    from bot.action_auth import load_action_secret
    from bot.settings import get_settings

    settings = get_settings()
    interface, rest = parse_interface(sys.argv[1:])
    # Rasa SDK's run() reads the host from SANIC_HOST and binds 0.0.0.0 without it.
    os.environ["SANIC_HOST"] = interface or settings.bind_host
    install_secret_check(load_action_secret(settings))
    warm_up()
    sys.argv = ["rasa_sdk", *rest]
    runpy.run_module("rasa_sdk", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
