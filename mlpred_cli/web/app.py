"""The dashboard's ASGI app: pages, the JSON API, the event stream and the static assets.

``create_app`` wires one ``LiveData`` (the read-only engine, the poller's state and the view
cache) and one ``Hub`` into a Starlette app whose lifespan runs the single poller. Every
query parameter is parsed by ``web.filters``; every error becomes a one-line response
(JSON under ``/api`` and ``/events``, a short page elsewhere), never a stack trace.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import anyio
import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from mlpred_cli import config
from mlpred_cli.__about__ import __version__
from mlpred_cli.config import HORIZONS
from mlpred_cli.errors import InputError, MlpredError
from mlpred_cli.render.output import to_jsonable
from mlpred_cli.web.auth import (
    LOOPBACK_HOSTS,
    SESSION_COOKIE,
    Guard,
    session_value,
    token_matches,
)
from mlpred_cli.web.filters import DAY_CHOICES, parse_filter, parse_limit, path_symbol
from mlpred_cli.web.hub import Hub, sse_message
from mlpred_cli.web.live import VIEWS, LiveData, LiveSettings

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).parent
STATIC_DIR = WEB_DIR / "static"
TEMPLATE_DIR = WEB_DIR / "templates"
SSE_RETRY_MS = 3000

#: Page path -> (template, page name, title).
PAGES: dict[str, tuple[str, str, str]] = {
    "/": ("overview.html.j2", "overview", "Overview"),
    "/timeseries": ("timeseries.html.j2", "timeseries", "Time series"),
    "/calibration": ("calibration.html.j2", "calibration", "Calibration"),
    "/symbols": ("symbols.html.j2", "symbols", "Symbols"),
    "/versions": ("versions.html.j2", "versions", "Model versions"),
    "/feed": ("feed.html.j2", "feed", "Live feed"),
}
_NO_STORE = {"cache-control": "no-store"}


def _asset_versions() -> dict[str, str]:
    return {
        path.relative_to(STATIC_DIR).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()[:12]
        for path in STATIC_DIR.rglob("*")
        if path.is_file()
    }


def _params(request: Request) -> dict[str, list[str]]:
    params: dict[str, list[str]] = {}
    for name, value in request.query_params.multi_items():
        params.setdefault(name, []).append(value)
    return params


def _is_api(request: Request) -> bool:
    path = request.url.path
    return path.startswith("/api/") or path == "/events"


class Dashboard:
    """The routes' shared state: data, hub, templates, token, poller task."""

    def __init__(self, live: LiveData, token: str | None, heartbeat_s: float) -> None:
        self.live = live
        self.hub = Hub()
        self.token = token
        self.heartbeat_s = heartbeat_s
        # autoescape for every template: Jinja's default only covers *.html, not *.html.j2
        environment = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)), autoescape=True
        )
        self.templates = Jinja2Templates(env=environment)
        versions = _asset_versions()
        self.templates.env.globals["static"] = lambda name: (
            f"/static/{name}?v={versions.get(name, __version__)}"
        )
        self._task: asyncio.Task[None] | None = None
        self._poll_limiter = anyio.CapacityLimiter(1)
        self._loop: asyncio.AbstractEventLoop | None = None

    # ------------------------------------------------------------ poller

    async def _poll_once(self) -> None:
        try:
            # its own thread budget: page requests filling the shared pool never stall it
            changed = await anyio.to_thread.run_sync(self.live.poll, limiter=self._poll_limiter)
        except MlpredError as error:
            log.warning("dashboard poll failed: %s", error)
            await self._publish("status")
            return
        except Exception:  # keep polling whatever one poll hit; the log has the details
            log.exception("dashboard poll failed")
            await self._publish("status")
            return
        # "update": the data moved (pages refetch); "tick": polled, nothing new (the page's
        # "updated N s ago" restarts without a request)
        await self._publish("update" if changed else "tick")

    async def _publish(self, event: str) -> None:
        """Send the poller's state as ``event``. A stream opened later starts from this same
        state as an update (or the poll's error): taken from what was published, not from
        a poll still on its way here, whose own message would then repeat it."""
        status = to_jsonable(self.live.status())
        opening = sse_message(status, "status" if status["error"] else "update")
        await self.hub.publish(sse_message(status, event), opening=opening)

    async def _poll_forever(self) -> None:
        while True:
            await self._poll_once()
            await asyncio.sleep(self.live.settings.refresh_s)

    def stop_streams(self) -> None:
        """End every open event stream (thread-safe; the server is stopping)."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self.hub.closing)

    @contextlib.asynccontextmanager
    async def lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        """Run the one poller while the app serves; stop it and end the streams after."""
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._poll_forever())
        try:
            yield
        finally:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            await self.hub.close()

    # ------------------------------------------------------------ routes

    def page(self, template: str, page: str, title: str) -> Callable[[Request], Any]:
        async def render(request: Request) -> Response:
            flt = parse_filter(_params(request))
            context: dict[str, Any] = {
                "page": page,
                "title": title,
                "filters": flt.to_dict(),
                "query": flt.query(),
                "horizons": list(HORIZONS),
                "day_choices": list(DAY_CHOICES),
                "refresh_s": self.live.settings.refresh_s,
                "version": __version__,
            }
            if page == "symbol":
                symbol = path_symbol(request.path_params["symbol"])
                context["symbol"] = symbol
                context["query"] = flt.query(symbol=None)
            return self.templates.TemplateResponse(request, template, context, headers=_NO_STORE)

        return render

    async def api_view(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name == "status":
            if request.query_params:
                raise InputError(
                    f"unknown query parameter {next(iter(request.query_params))!r:.40}"
                )
            status = {**self.live.status(), "clients": self.hub.clients}
            return JSONResponse(to_jsonable(status), headers=_NO_STORE)
        if name not in VIEWS:
            raise HTTPException(404)
        params = _params(request)
        limit = parse_limit({"limit": params.pop("limit")}) if "limit" in params else None
        if limit is not None and name != "feed":
            raise InputError("limit applies to /api/feed only")
        flt = parse_filter(params)
        # a view already computed at this data version is answered without a thread hop
        body = self.live.cached_json(name, flt, limit)
        if body is None:
            body = await run_in_threadpool(self.live.view_json, name, flt, limit)
        return Response(body, media_type="application/json", headers=_NO_STORE)

    async def events(self, request: Request) -> Response:
        if request.query_params:
            raise InputError("/events takes no query parameters")
        if request.method == "HEAD":  # no stream to hold open
            return Response(media_type="text/event-stream", headers=_NO_STORE)
        stream = self.hub.stream(self.heartbeat_s, SSE_RETRY_MS)
        headers = {**_NO_STORE, "x-accel-buffering": "no"}
        return StreamingResponse(stream, media_type="text/event-stream", headers=headers)

    async def login(self, request: Request) -> Response:
        if self.token is None:
            return RedirectResponse("/", status_code=303)
        given = request.query_params.get("token", "")
        if not token_matches(given, self.token):
            return self._error(request, 401, "wrong or missing token")
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(
            SESSION_COOKIE, session_value(self.token), httponly=True, samesite="strict", path="/"
        )
        return response

    async def logout(self, _request: Request) -> Response:
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    # ------------------------------------------------------------ errors

    def _error(self, request: Request, status: int, message: str) -> Response:
        if _is_api(request):
            return JSONResponse({"error": message}, status_code=status, headers=_NO_STORE)
        return self.templates.TemplateResponse(
            request,
            "error.html.j2",
            {"status": status, "message": message, "title": f"Error {status}"},
            status_code=status,
            headers=_NO_STORE,
        )

    async def on_input_error(self, request: Request, error: Exception) -> Response:
        return self._error(request, 400, str(error).splitlines()[0])

    async def on_http_error(self, request: Request, error: Exception) -> Response:
        assert isinstance(error, HTTPException)
        messages = {404: "not found", 405: "method not allowed"}
        return self._error(request, error.status_code, messages.get(error.status_code, "error"))

    async def on_mlpred_error(self, request: Request, error: Exception) -> Response:
        return self._error(request, 503, str(error).splitlines()[0])

    async def on_server_error(self, request: Request, error: Exception) -> Response:
        log.error("dashboard request failed", exc_info=error)
        return self._error(request, 500, "internal error: see the server's log")


def create_app(
    engine: Engine,
    *,
    token: str | None = None,
    settings: LiveSettings | None = None,
    clock: Callable[[], datetime] | None = None,
    heartbeat_s: float = config.WEB_HEARTBEAT_S,
    allowed_hosts: frozenset[str] | None = None,
) -> Guard:
    """The dashboard app over a read-only ``engine`` (``store.read_only``), guarded by
    ``token`` when one is given; without one it answers only the Host names
    ``allowed_hosts`` (default: the loopback names). Its lifespan runs one poller every
    ``settings.refresh_s``; ``.app.state.dashboard`` is its ``Dashboard``."""
    dashboard = Dashboard(LiveData(engine, settings, clock), token, heartbeat_s)
    routes: list[Any] = [
        Route(path, dashboard.page(*page), methods=["GET"]) for path, page in PAGES.items()
    ]
    routes += [
        Route(
            "/symbols/{symbol:path}",
            dashboard.page("symbol.html.j2", "symbol", "Symbol"),
            methods=["GET"],
        ),
        Route("/api/{name}", dashboard.api_view, methods=["GET"]),
        Route("/events", dashboard.events, methods=["GET"]),
        Route("/login", dashboard.login, methods=["GET"]),
        Route("/logout", dashboard.logout, methods=["GET"]),
        Mount("/static", app=StaticFiles(directory=str(STATIC_DIR)), name="static"),
    ]
    app = Starlette(
        routes=routes,
        lifespan=dashboard.lifespan,
        exception_handlers={
            InputError: dashboard.on_input_error,
            HTTPException: dashboard.on_http_error,
            MlpredError: dashboard.on_mlpred_error,
            Exception: dashboard.on_server_error,
        },
    )
    app.state.dashboard = dashboard
    if token is None and allowed_hosts is None:
        allowed_hosts = LOOPBACK_HOSTS
    return Guard(app, token, allowed_hosts if token is None else None)


def dashboard_of(app: Guard) -> Dashboard:
    """The ``Dashboard`` (data, hub, poller) of an app ``create_app`` made."""
    dashboard = cast(Starlette, app.app).state.dashboard
    assert isinstance(dashboard, Dashboard)
    return dashboard
