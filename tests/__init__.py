"""The test suite.

A developer's own config file must not change what the tests see. The settings load when
``mlpred_cli.config`` is first imported, and this package is imported before its conftest
and test modules, so the user config directory is pointed at a place that holds no
``mlpred.toml`` and ``MLPRED_CONFIG`` is dropped here (subprocesses inherit both).
"""

import os
import tempfile
from pathlib import Path

os.environ.pop("MLPRED_CONFIG", None)
os.environ["XDG_CONFIG_HOME"] = str(Path(tempfile.gettempdir()) / "mlpred-tests-no-user-config")
