"""``mlpred serve``: the live dashboard (optional extra ``mlpred[web]``)."""

from __future__ import annotations

import os

import typer

from mlpred_cli import config
from mlpred_cli.cli.app import app
from mlpred_cli.cli.common import cli_errors, database_url, flag_errors
from mlpred_cli.errors import InputError

TOKEN_ENV = "MLPRED_WEB_TOKEN"


@app.command("serve", rich_help_panel="Monitoring")
def serve_command(
    ctx: typer.Context,
    host: str = typer.Option(
        config.WEB_DEFAULT_HOST, "--host", help="Address to listen on (non-loopback needs a token)."
    ),
    port: int = typer.Option(config.WEB_DEFAULT_PORT, "--port", help="Port to listen on."),
    token: str | None = typer.Option(
        None,
        "--token",
        envvar=TOKEN_ENV,
        show_envvar=True,
        help="Shared secret: Authorization: Bearer TOKEN, or open /login?token=TOKEN once.",
    ),
    refresh: float = typer.Option(
        config.WEB_REFRESH_S, "--refresh", help="Seconds between the server's database polls."
    ),
) -> None:
    r"""A live dashboard: overview, time series, calibration, symbols, model versions and a
    live feed, updated over server-sent events; the JSON API under /api. The database is
    opened read-only. Needs the web extra: pip install 'mlpred-cli\[web]'.

    Example:

        mlpred serve --port 8050

        MLPRED_WEB_TOKEN=$(openssl rand -hex 16) mlpred serve --host 0.0.0.0
    """
    from mlpred_cli.web.extra import require_web_extra
    from mlpred_cli.web.server import check_listen

    with cli_errors(), flag_errors():
        require_web_extra()
        # click reads an empty variable as unset: an empty secret must not mean "no token"
        if token == "" or (token is None and os.environ.get(TOKEN_ENV) == ""):
            raise InputError(f"the token is empty (--token or {TOKEN_ENV})")
        check_listen(host, port, token, refresh)
        from mlpred_cli.web.server import serve

        def announce(where: str) -> None:
            login = " (open /login?token=... once, or send Authorization: Bearer)" if token else ""
            typer.echo(f"mlpred dashboard on {where}{login}; Ctrl-C stops it", err=True)

        serve(
            database_url(ctx),
            host=host,
            port=port,
            token=token,
            refresh_s=refresh,
            announce=announce,
        )
