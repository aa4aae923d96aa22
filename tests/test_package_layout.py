"""The package's shape: the curated public API, cheap imports, no POSIX-only imports."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import mlpred_cli

PACKAGE_DIR = Path(mlpred_cli.__file__).parent

#: Libraries the CLI must not import before a command runs (start-up time and memory).
HEAVY_MODULES = ("pandas", "numpy", "scipy", "pyarrow", "sqlalchemy", "psycopg", "alembic")


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )


def test_top_level_holds_only_settings_errors_and_subpackages() -> None:
    modules = {path.name for path in PACKAGE_DIR.glob("*.py")}
    assert modules == {
        "__init__.py",
        "__about__.py",
        "__main__.py",
        "config.py",
        "config_file.py",
        "console_script.py",
        "errors.py",
    }
    packages = {path.parent.name for path in PACKAGE_DIR.glob("*/__init__.py")}
    assert {"cli", "render", "analysis", "capture", "outcomes", "derive", "store"} <= packages


def test_every_public_name_resolves_to_an_internal_module() -> None:
    for name in mlpred_cli.__all__:
        value = getattr(mlpred_cli, name)
        if name == "__version__":
            assert isinstance(value, str)
            continue
        module = mlpred_cli._EXPORTS[name]
        assert module.startswith("mlpred_cli."), (name, module)
        assert getattr(importlib.import_module(module), name) is value
    assert set(mlpred_cli.__all__) == {"__version__", *mlpred_cli._EXPORTS}


def test_unknown_public_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_thing"):
        _ = mlpred_cli.no_such_thing


def test_importing_the_package_is_cheap() -> None:
    result = run_python(
        f"import sys, mlpred_cli; print(sorted(m for m in {HEAVY_MODULES!r} if m in sys.modules))"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_the_cli_registers_its_commands_without_heavy_imports() -> None:
    result = run_python(
        "import sys; from mlpred_cli.cli import app; "
        "import typer.main; typer.main.get_command(app); "
        f"print(sorted(m for m in {HEAVY_MODULES!r} if m in sys.modules))"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_every_module_imports_without_fcntl() -> None:
    """``fcntl`` exists only on POSIX: no module may import it at module level."""
    modules = sorted(
        "mlpred_cli." + ".".join(path.relative_to(PACKAGE_DIR).with_suffix("").parts)
        for path in PACKAGE_DIR.rglob("*.py")
        if path.name not in ("__init__.py", "__main__.py")
    )
    code = (
        "import importlib, sys; sys.modules['fcntl'] = None; import mlpred_cli; "
        f"[importlib.import_module(name) for name in {modules!r}]; print('ok')"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
