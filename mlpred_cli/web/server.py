"""``serve``: check where and how the dashboard may listen, open the database read-only
and run the app under uvicorn until interrupted."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import replace

from mlpred_cli import config
from mlpred_cli.errors import InputError
from mlpred_cli.store.read_only import create_read_only_engine
from mlpred_cli.store.source import DatabaseSource
from mlpred_cli.web.extra import require_web_extra
from mlpred_cli.web.live import LiveSettings


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address or ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_listen(host: str, port: int, token: str | None, refresh_s: float) -> None:
    """``InputError`` for a bind the dashboard refuses: a non-loopback host without a
    token, a short token, a port or refresh interval out of range."""
    if not 1 <= port <= 65535:
        raise InputError(f"port must be from 1 to 65535, got {port}")
    if not 1 <= refresh_s <= 3600:
        raise InputError(f"refresh must be from 1 to 3600 seconds, got {refresh_s:g}")
    if token is not None and len(token) < config.WEB_TOKEN_MIN_LENGTH:
        raise InputError(f"the token must be at least {config.WEB_TOKEN_MIN_LENGTH} characters")
    if token is not None and not token.isprintable():
        raise InputError("the token must be printable text")
    if token is None and not is_loopback(host):
        raise InputError(
            f"refusing to listen on {host} without a token: anyone who can reach it "
            "would read the dashboard (set a token, or listen on 127.0.0.1)"
        )


def serve(
    database: DatabaseSource,
    *,
    host: str = config.WEB_DEFAULT_HOST,
    port: int = config.WEB_DEFAULT_PORT,
    token: str | None = None,
    refresh_s: float = config.WEB_REFRESH_S,
    settings: LiveSettings | None = None,
    announce: Callable[[str], None] | None = None,
) -> None:
    """Serve the dashboard of ``database`` (opened read-only) until interrupted;
    ``announce`` gets the dashboard's URL once the database is open."""
    require_web_extra()
    check_listen(host, port, token, refresh_s)
    import uvicorn

    from mlpred_cli.web.app import create_app

    engine = create_read_only_engine(database, statement_timeout_ms=config.WEB_STATEMENT_TIMEOUT_MS)
    try:
        app = create_app(
            engine, token=token, settings=replace(settings or LiveSettings(), refresh_s=refresh_s)
        )
        if announce is not None:
            shown = f"[{host.strip('[]')}]" if ":" in host else host
            announce(f"http://{shown}:{port}/")
        uvicorn.run(
            app,
            host=host.strip("[]"),
            port=port,
            access_log=False,  # the login URL carries the token: keep it out of logs
            log_level="warning",
            timeout_graceful_shutdown=2,
            server_header=False,
        )
    finally:
        engine.dispose()
