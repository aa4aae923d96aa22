"""Whether the optional ``web`` extra (Starlette, uvicorn, Jinja2) is installed."""

from __future__ import annotations

import importlib

from mlpred_cli.errors import InputError

#: The modules ``mlpred serve`` runs on.
WEB_MODULES: tuple[str, ...] = ("starlette", "uvicorn", "jinja2")

INSTALL_HINT = "pip install 'mlpred-cli[web]'"


def missing_web_modules() -> list[str]:
    """The modules of the extra that cannot be imported."""
    missing = []
    for name in WEB_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    return missing


def require_web_extra() -> None:
    """``InputError`` (exit 2) naming the missing modules and the ``pip install`` to run."""
    missing = missing_web_modules()
    if missing:
        raise InputError(
            f"mlpred serve needs the web extra (missing: {', '.join(missing)}): {INSTALL_HINT}"
        )
