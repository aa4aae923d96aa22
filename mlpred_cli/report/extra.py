"""Whether the optional ``report`` extra (matplotlib, Jinja2) is installed."""

from __future__ import annotations

import importlib

from mlpred_cli.errors import InputError

#: The modules ``mlpred report`` draws and renders with.
REPORT_MODULES: tuple[str, ...] = ("matplotlib", "jinja2")

INSTALL_HINT = "pip install 'mlpred-cli[report]'"


def require_report_extra() -> None:
    """``InputError`` (exit 2) naming the missing modules and the ``pip install`` to run."""
    missing = []
    for name in REPORT_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise InputError(
            f"mlpred report needs the report extra (missing: {', '.join(missing)}): {INSTALL_HINT}"
        )
