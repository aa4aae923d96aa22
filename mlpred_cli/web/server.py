"""``serve``: check where and how the dashboard may listen, open the database read-only
and run the app under uvicorn until interrupted."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import replace
from types import FrameType

from mlpred_cli import config
from mlpred_cli.errors import InputError, MlpredError
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
    if token is not None and not (token.isascii() and token.isprintable() and " " not in token):
        # an Authorization header carries ASCII, and its value is trimmed
        raise InputError("the token must be printable ASCII without spaces")
    if token is None and not is_loopback(host):
        raise InputError(
            f"refusing to listen on {host} without a token: anyone who can reach it "
            "would read the dashboard (set a token, or listen on 127.0.0.1)"
        )


def _bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before anything is announced (a port in use is a
    one-line error, not a server that says it runs and then exits)."""
    bare = host.strip("[]")
    family = socket.AF_INET6 if ":" in bare else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((bare, port))
    except OSError as error:
        sock.close()
        reason = error.strerror or str(error)
        raise MlpredError(f"cannot listen on {host}:{port}: {reason}") from None
    return sock


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
    ``announce`` gets the dashboard's URL once the database is open and the port bound."""
    require_web_extra()
    check_listen(host, port, token, refresh_s)
    import uvicorn

    from mlpred_cli.web.app import create_app, dashboard_of
    from mlpred_cli.web.auth import LOOPBACK_HOSTS

    engine = create_read_only_engine(database, statement_timeout_ms=config.WEB_STATEMENT_TIMEOUT_MS)
    try:
        hosts = None if token is not None else LOOPBACK_HOSTS | {host.strip("[]").lower()}
        app = create_app(
            engine,
            token=token,
            settings=replace(settings or LiveSettings(), refresh_s=refresh_s),
            allowed_hosts=hosts,
        )
        dashboard = dashboard_of(app)

        class _Server(uvicorn.Server):
            def handle_exit(self, sig: int, frame: FrameType | None) -> None:
                # end the open event streams now: uvicorn waits for connections to close
                # before the app's shutdown, and would cancel them (a traceback) instead
                dashboard.stop_streams()
                super().handle_exit(sig, frame)

        sock = _bind(host, port)
        server = _Server(
            uvicorn.Config(
                app,
                access_log=False,  # the login URL carries the token: keep it out of logs
                log_level="warning",
                timeout_graceful_shutdown=5,
                server_header=False,
            )
        )
        if announce is not None:
            shown = f"[{host.strip('[]')}]" if ":" in host else host
            announce(f"http://{shown}:{port}/")
        try:
            server.run(sockets=[sock])
        except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it handled: a normal stop
            pass
        finally:
            sock.close()
    finally:
        engine.dispose()
