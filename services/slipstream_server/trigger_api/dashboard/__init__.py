"""The dashboard: server-rendered pages under `/dashboard/`, served by trigger-api, that read and
act only through the public HTTP API and realtime (ADR 0015).

Sign-in keeps the user's secret keys (one per environment they added) in an HttpOnly,
SameSite=Strict cookie; every form that changes something carries a CSRF token, an HMAC of the
session's current key. The pages' JavaScript follows runs over realtime websockets with a public
access token the server mints for it, never with the secret key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import aiohttp
import jinja2
import msgspec
from aiohttp import web
from slipstream_core import cron
from slipstream_platform.service import Service
from slipstream_platform.settings import TriggerApiSettings
from slipstream_proto import (
    Deployment,
    DeploymentList,
    EnvironmentLimits,
    PublicToken,
    QueueList,
    Run,
    RunList,
    RunLogs,
    RunSpans,
    Schedule,
    SchedulePage,
    Timezones,
    TriggerResponse,
)
from slipstream_proto.machines import MACHINE_PRESETS
from slipstream_proto.statuses import FINAL_STATUSES

from slipstream_server.trigger_api.dashboard.api import Api, ApiError
from slipstream_server.trigger_api.dashboard.examples import example
from slipstream_server.trigger_api.dashboard.traces import timeline

HERE = Path(__file__).parent
COOKIE = "slipstream_dashboard"
PREFIX = "/dashboard"
STATUSES = ["PENDING_VERSION", "DELAYED", "QUEUED", "DEQUEUED", "EXECUTING", "WAITING", "COMPLETED", "CANCELED",
            "FAILED", "CRASHED", "SYSTEM_FAILURE", "TIMED_OUT", "EXPIRED"]
ENVIRONMENT_TYPES = ["DEVELOPMENT", "STAGING", "PRODUCTION", "PREVIEW"]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Session(msgspec.Struct, kw_only=True):
    """What the cookie holds: the keys the user signed in with, by environment type."""

    keys: dict[str, str] = {}
    current: str = ""

    @property
    def key(self) -> str:
        return self.keys.get(self.current, "")

    def encode(self) -> str:
        return base64.urlsafe_b64encode(msgspec.json.encode(self)).decode()

    @classmethod
    def decode(cls, text: str | None) -> Session | None:
        if not text:
            return None
        try:
            session = msgspec.json.decode(base64.urlsafe_b64decode(text.encode()), type=cls)
        except (ValueError, msgspec.DecodeError, msgspec.ValidationError):
            return None
        return session if session.key else None


def csrf_token(session: Session) -> str:
    """The token every form of this session carries: without the key nobody can make it."""
    return hmac.new(session.key.encode(), b"slipstream-dashboard-csrf", hashlib.sha256).hexdigest()


def mask(key: str) -> str:
    """A secret key as the environments page shows it."""
    prefix, _, rest = key.rpartition("_")
    return f"{prefix}_{'•' * 8}{rest[-4:]}" if rest else "•" * 8


def pretty(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=False, default=str, ensure_ascii=False)


def when(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if value else "–"


def local_path(target: str | None) -> str:
    """A redirect target inside the dashboard (never another site)."""
    if not target or any(ord(c) < 32 or ord(c) == 127 for c in target):
        return PREFIX + "/runs"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith(PREFIX + "/"):
        return PREFIX + "/runs"
    return target


# The banners a redirect may ask for (`?flash=<code>`): fixed texts, never text from the URL.
FLASHES = {
    "canceled": "Cancel requested.",
    "replayed": "This run replays the one you came from.",
    "schedule-saved": "Schedule saved.",
    "schedule-activated": "Schedule activated.",
    "schedule-deactivated": "Schedule deactivated.",
    "schedule-deleted": "Schedule deleted.",
    "paused": "Queue paused.",
    "resumed": "Queue resumed.",
    "limits-saved": "Limits saved.",
    "limits-bad": "The limits must be numbers.",
}


def same_origin(request: web.Request) -> bool:
    """Whether a POST comes from a page of this site (login CSRF: a form on another site that
    signs the victim in with the attacker's key is refused before any cookie is set)."""
    fetch_site = request.headers.get("Sec-Fetch-Site")
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("Origin")
    if origin is not None and origin != "null":
        return urlsplit(origin).netloc == request.host
    return origin != "null"


def add_dashboard(service: Service[TriggerApiSettings]) -> None:
    """Serve the dashboard's pages under /dashboard/ on this trigger-api."""
    templates = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
                                   undefined=jinja2.StrictUndefined)
    templates.filters["pretty"] = pretty
    templates.filters["when"] = when
    templates.filters["mask"] = mask
    templates.filters["segment"] = lambda text: quote(str(text), safe="")  # one path segment
    http: dict[str, aiohttp.ClientSession] = {}

    async def open_client(app: web.Application) -> None:
        http["session"] = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))

    async def close_client(app: web.Application) -> None:
        await http["session"].close()

    service.app.on_startup.append(open_client)
    service.app.on_cleanup.append(close_client)

    def api_for(key: str) -> Api:
        # The public API of this very process: what a script calling trigger-api would use.
        return Api(http["session"], f"http://127.0.0.1:{service.port}", key)

    def realtime_url(request: web.Request) -> str:
        url = service.settings.realtime_url or f"{request.scheme}://{request.host.split(':')[0]}:3031"
        return url.replace("https://", "wss://").replace("http://", "ws://").rstrip("/")

    def render(request: web.Request, template: str, status: int = 200, **context: Any) -> web.Response:
        session: Session | None = request.get("session")
        page = templates.get_template(template).render(
            prefix=PREFIX, session=session, csrf=csrf_token(session) if session else "",
            environment_types=ENVIRONMENT_TYPES, path=request.path_qs,
            flash=FLASHES.get(request.query.get("flash", ""), ""), **context)
        realtime = realtime_url(request)
        policy = (f"default-src 'self'; connect-src 'self' {realtime}; img-src 'self' data:; "
                  "frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
        return web.Response(text=page, status=status, content_type="text/html",
                            headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY",
                                     "Referrer-Policy": "same-origin", "X-Content-Type-Options": "nosniff",
                                     "Content-Security-Policy": policy})

    def over_https(request: web.Request | None) -> bool:
        if service.settings.api_url.startswith("https://"):
            return True
        return request is not None and (request.secure or request.headers.get("X-Forwarded-Proto") == "https")

    def redirect(location: str, session: Session | None = None, clear: bool = False,
                 request: web.Request | None = None) -> web.Response:
        response = web.Response(status=303, headers={"Location": location})
        if session is not None:
            response.set_cookie(COOKIE, session.encode(), httponly=True, samesite="Strict", path=PREFIX,
                                secure=over_https(request), max_age=30 * 24 * 3600)
        if clear:
            response.del_cookie(COOKIE, path=PREFIX)
        return response

    def page(handler: Handler) -> Handler:
        """A signed-in page: the session, a CSRF check on POST, API errors shown as a page."""

        async def wrapped(request: web.Request) -> web.StreamResponse:
            session = Session.decode(request.cookies.get(COOKIE))
            if session is None:
                return redirect(f"{PREFIX}/login?{urlencode({'next': request.path_qs})}")
            request["session"] = session
            if request.method == "POST":
                form = await request.post()
                sent = str(form.get("csrf", "")).encode()
                if not same_origin(request) or not hmac.compare_digest(sent, csrf_token(session).encode()):
                    return render(request, "error.html", 403, title="Forbidden",
                                  message="This form is stale or came from another site (CSRF check failed):"
                                          " reload the page and try again.")
                request["form"] = form
            try:
                return await handler(request)
            except ApiError as exc:
                if exc.status == 401:
                    return redirect(f"{PREFIX}/login?{urlencode({'next': request.path_qs})}", clear=True)
                return render(request, "error.html", exc.status if exc.status in (400, 403, 404, 422) else 502,
                              title=f"The API answered {exc.status}", message=exc.message)

        return wrapped

    def api(request: web.Request) -> Api:
        return api_for(request["session"].key)

    def form(request: web.Request) -> Any:
        return request["form"]

    async def read_token(request: web.Request, run_ids: list[str], *, everything: bool = False) -> str:
        """A public access token for the page's JavaScript, for an hour: reads these runs (those it
        follows) and nothing else, or with `everything` every run of the environment (the runs
        list's feed); it never triggers or changes anything. Empty if the page follows none."""
        if not run_ids and not everything:
            return ""
        scopes = ["read:runs"] if everything else [f"read:runs:{r}" for r in run_ids]
        minted = await api(request).call("POST", "/api/v1/auth/tokens", PublicToken,
                                         {"scopes": scopes, "expirationTime": "1h"})
        return minted.token

    # -- sign-in ---------------------------------------------------------------------------

    async def login_form(request: web.Request) -> web.Response:
        return render(request, "login.html", next=local_path(request.query.get("next")), error="")

    async def login(request: web.Request) -> web.Response:
        if not same_origin(request):
            return render(request, "error.html", 403, title="Forbidden",
                          message="Sign in from this dashboard's own page.")
        posted = await request.post()
        key = str(posted.get("key", "")).strip()
        target = local_path(str(posted.get("next", "")))
        try:
            env = await api_for(key).call("GET", "/api/v1/environment", EnvironmentLimits) if key else None
        except ApiError:
            env = None
        if env is None:
            return render(request, "login.html", 401, next=target,
                          error="That is not a secret key of this platform (it starts with sk_dev_, sk_stg_,"
                                " sk_prod_ or sk_prev_).")
        old = Session.decode(request.cookies.get(COOKIE))
        keys = dict(old.keys) if old else {}
        keys[env.type] = key
        return redirect(target, Session(keys=keys, current=env.type), request=request)

    async def logout(request: web.Request) -> web.Response:
        return redirect(f"{PREFIX}/login", clear=True)

    # -- runs ------------------------------------------------------------------------------

    FILTERS = [("status", "filter[status]"), ("task", "filter[taskIdentifier]"), ("tag", "filter[tag]"),
               ("version", "filter[version]"), ("queue", "filter[queue]"), ("batch", "filter[batch]"),
               ("schedule", "filter[schedule]"), ("period", "filter[createdAt][period]")]

    async def runs_page(request: web.Request) -> web.Response:
        query = request.query
        params = [(wire, query[name]) for name, wire in FILTERS if query.get(name)]
        params.append(("page[size]", "25"))
        for cursor in ("after", "before"):
            if query.get(cursor):
                params.append((f"page[{cursor}]", query[cursor]))
        listed = await api(request).call("GET", "/api/v1/runs", RunList, params=params)
        kept = {name: query[name] for name, _ in FILTERS if query.get(name)}
        # The first page follows the environment's feed (new runs appear); older pages follow their rows.
        feed = not query.get("after") and not query.get("before")
        token = (await read_token(request, [], everything=True) if feed else
                 await read_token(request, [r.id for r in listed.data if r.status not in FINAL_STATUSES]))
        return render(request, "runs.html", runs=listed.data, pagination=listed.pagination, filters=kept,
                      statuses=STATUSES, final=sorted(FINAL_STATUSES), token=token, feed=feed,
                      since=datetime.now(UTC).isoformat(),
                      realtime=realtime_url(request), link=lambda **more: "?" + urlencode({**kept, **more}))

    async def run_page(request: web.Request) -> web.Response:
        run_id = request.match_info["run_id"]
        client = api(request)
        run = await client.call("GET", f"/api/v3/runs/{quote(run_id, safe='')}", Run[Any])
        logs = await client.call("GET", f"/api/v1/runs/{quote(run_id, safe='')}/logs", RunLogs)
        spans = await client.call("GET", f"/api/v1/runs/{quote(run_id, safe='')}/spans", RunSpans)
        trace, trace_ms = timeline(spans.data)
        return render(request, "run.html", run=run, logs=logs.data, final=sorted(FINAL_STATUSES),
                      trace=trace, trace_ms=trace_ms, trace_id=spans.trace_id,
                      token=await read_token(request, [run.id] if run.status not in FINAL_STATUSES else []),
                      realtime=realtime_url(request))

    async def cancel(request: web.Request) -> web.Response:
        run_id = request.match_info["run_id"]
        await api(request).call("POST", f"/api/v2/runs/{quote(run_id, safe='')}/cancel", dict)
        return redirect(f"{PREFIX}/runs/{quote(run_id, safe='')}?flash=canceled")

    async def replay(request: web.Request) -> web.Response:
        run_id = request.match_info["run_id"]
        made = await api(request).call("POST", f"/api/v1/runs/{quote(run_id, safe='')}/replay", dict)
        return redirect(f"{PREFIX}/runs/{quote(str(made['id']), safe='')}?flash=replayed")

    # -- test ------------------------------------------------------------------------------

    async def current_tasks(client: Api) -> list[str]:
        versions: list[Deployment] = (await client.call("GET", "/api/v1/deployments", DeploymentList)).data
        return sorted({t for d in versions if d.status == "CURRENT" for t in d.tasks})

    async def payload_schema(client: Api, task: str) -> dict[str, Any] | None:
        """The JSON Schema of a schema task's payload, from the current version that has the task."""
        versions = (await client.call("GET", "/api/v1/deployments", DeploymentList)).data
        for found in versions:
            if found.status == "CURRENT" and task in found.tasks:
                full = await client.call("GET", f"/api/v1/deployments/{quote(found.version, safe='')}", Deployment)
                if full.payload_schemas and task in full.payload_schemas:
                    return full.payload_schemas[task]
        return None

    async def test_page(request: web.Request) -> web.Response:
        client = api(request)
        tasks = await current_tasks(client)
        task = request.query.get("task") or (tasks[0] if tasks else "")
        payload: Any = {}
        source = "no earlier run: an empty object"
        if task:
            recent = await client.call("GET", "/api/v1/runs", RunList,
                                       params=[("filter[taskIdentifier]", task), ("page[size]", "1")])
            if recent.data:
                last = await client.call("GET", f"/api/v3/runs/{quote(recent.data[0].id, safe='')}", Run[Any])
                payload, source = last.payload, f"the payload of {last.id}, its latest run"
            else:
                schema = await payload_schema(client, task)
                if schema is not None:
                    payload, source = example(schema), "an example of the task's schema"
        return render(request, "test.html", tasks=tasks, task=task, payload=pretty(payload), source=source,
                      machines=list(MACHINE_PRESETS), error="", options={})

    async def run_test(request: web.Request) -> web.Response:
        posted = form(request)
        task = str(posted.get("task", ""))
        options: dict[str, Any] = {}
        for name, wire in (("delay", "delay"), ("queue", "queue"), ("concurrency_key", "concurrencyKey"),
                           ("machine", "machine")):
            value = str(posted.get(name, "")).strip()
            if value:
                options[wire] = {"name": value} if wire == "queue" else value
        tags = [t.strip() for t in str(posted.get("tags", "")).split(",") if t.strip()]
        if tags:
            options["tags"] = tags
        error = ""
        try:
            payload = json.loads(str(posted.get("payload", "null")) or "null")
        except json.JSONDecodeError as exc:
            error = f"The payload is not JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}."
        if not error:
            try:
                made = await api(request).call("POST", f"/api/v1/tasks/{quote(task, safe='')}/trigger",
                                               TriggerResponse, {"payload": payload, "options": options})
            except ApiError as exc:
                if exc.status == 401:
                    raise
                error = f"The API refused the trigger ({exc.status}): {exc.message}"
            else:
                return redirect(f"{PREFIX}/runs/{quote(made.id, safe='')}")
        return render(request, "test.html", 422, tasks=await current_tasks(api(request)), task=task,
                      payload=str(posted.get("payload", "")), source="what you entered",
                      machines=list(MACHINE_PRESETS), error=error,
                      options={k: str(posted.get(k, "")) for k in ("delay", "queue", "concurrency_key", "machine",
                                                                   "tags")})

    # -- schedules -------------------------------------------------------------------------

    async def schedules_page(request: web.Request, error: str = "", status: int = 200,
                             editing_id: str | None = None) -> web.Response:
        client = api(request)
        listed = await client.call("GET", "/api/v1/schedules", SchedulePage, params=[("perPage", "100")])
        zones = (await client.call("GET", "/api/v1/timezones", Timezones)).timezones
        upcoming: dict[str, list[datetime]] = {}
        for s in listed.data:
            try:
                spec = cron.parse(s.generator.expression, s.timezone)
                upcoming[s.id] = cron.next_ticks(spec, datetime.now(UTC), 5)
            except ValueError:  # CronError, or croniter's for a date that never comes (Feb 30)
                upcoming[s.id] = []
        wanted = editing_id or request.query.get("edit")
        editing = next((s for s in listed.data if s.id == wanted and s.type != "DECLARATIVE"), None)
        return render(request, "schedules.html", status, schedules=listed.data, upcoming=upcoming, zones=zones,
                      tasks=await current_tasks(client), error=error, editing=editing)

    async def schedules_list(request: web.Request) -> web.Response:
        return await schedules_page(request)

    async def schedule_create(request: web.Request) -> web.Response:
        posted = form(request)
        body = {"task": str(posted.get("task", "")), "cron": str(posted.get("cron", "")).strip(),
                "timezone": str(posted.get("timezone", "UTC")) or "UTC",
                "deduplicationKey": str(posted.get("deduplication_key", "")).strip()}
        if posted.get("external_id"):
            body["externalId"] = str(posted["external_id"])
        editing = str(posted.get("schedule_id", ""))
        try:
            if editing:  # PUT: the same schedule with a new task, cron, zone or external id
                del body["deduplicationKey"]
                await api(request).call("PUT", f"/api/v1/schedules/{quote(editing, safe='')}", Schedule, body)
            else:  # an upsert by deduplication key
                await api(request).call("POST", "/api/v1/schedules", Schedule, body)
        except ApiError as exc:
            if exc.status not in (400, 422):
                raise
            return await schedules_page(request, f"The schedule was not saved: {exc.message}", 422,
                                        editing_id=editing or None)
        return redirect(f"{PREFIX}/schedules?flash=schedule-saved")

    async def schedule_action(request: web.Request) -> web.Response:
        schedule_id, action = request.match_info["schedule_id"], request.match_info["action"]
        path = f"/api/v1/schedules/{quote(schedule_id, safe='')}"
        if action == "delete":
            await api(request).call("DELETE", path, dict)
        else:
            await api(request).call("POST", f"{path}/{action}", Schedule)
        return redirect(f"{PREFIX}/schedules?flash=schedule-{action}d")

    async def cron_preview(request: web.Request) -> web.Response:
        """The human description and next five ticks of a cron the create form is typing."""
        try:
            spec = cron.parse(request.query.get("cron", ""), request.query.get("timezone", "UTC") or "UTC")
            ticks = cron.next_ticks(spec, datetime.now(UTC), 5)
        except ValueError as exc:  # CronError, or croniter's for a date that never comes (Feb 30)
            return web.json_response({"error": str(exc)}, status=422)
        return web.json_response({"description": cron.describe(spec), "next": [when(t) for t in ticks]})

    # -- queues and environments -----------------------------------------------------------

    async def queues_page(request: web.Request) -> web.Response:
        client = api(request)
        queues = (await client.call("GET", "/api/v1/queues", QueueList)).data
        limits = await client.call("GET", "/api/v1/environment", EnvironmentLimits)
        return render(request, "queues.html", queues=queues, limits=limits)

    async def set_limits(request: web.Request) -> web.Response:
        posted = form(request)
        body: dict[str, Any] = {}
        try:
            if posted.get("concurrency_limit"):
                body["concurrencyLimit"] = int(str(posted["concurrency_limit"]))
            if posted.get("burst_factor"):
                body["burstFactor"] = float(str(posted["burst_factor"]))
        except ValueError:
            return redirect(f"{PREFIX}/queues?flash=limits-bad")
        try:
            await api(request).call("PATCH", "/api/v1/environment", EnvironmentLimits, body)
        except ApiError as exc:
            if exc.status != 422:
                raise
            return render(request, "error.html", 422, title="The limits were not saved", message=exc.message)
        return redirect(f"{PREFIX}/queues?flash=limits-saved")

    async def queue_action(request: web.Request) -> web.Response:
        name, action = request.match_info["name"], request.match_info["action"]
        await api(request).call("POST", f"/api/v1/queues/{quote(name, safe='')}/{action}", dict)
        return redirect(f"{PREFIX}/queues?flash={'paused' if action == 'pause' else 'resumed'}")

    async def environments_page(request: web.Request) -> web.Response:
        return render(request, "environments.html", error="")

    async def environment_switch(request: web.Request) -> web.Response:
        session: Session = request["session"]
        wanted = str(form(request).get("type", ""))
        if wanted not in session.keys:
            return render(request, "environments.html", 422, error=f"No key of {wanted} was added yet.")
        return redirect(local_path(str(form(request).get("next", ""))) if form(request).get("next")
                        else f"{PREFIX}/runs", Session(keys=session.keys, current=wanted))

    async def environment_key(request: web.Request) -> web.Response:
        """One added key, for the Copy button: a same-origin POST with the CSRF token, on the click."""
        key = request["session"].keys.get(request.match_info["type"])
        if key is None:
            raise web.HTTPNotFound()
        return web.Response(text=key, headers={"Cache-Control": "no-store"})

    async def static(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name not in ("dashboard.js", "dashboard.css"):
            raise web.HTTPNotFound()
        content_type = "text/javascript" if name.endswith(".js") else "text/css"
        return web.Response(body=(HERE / "static" / name).read_bytes(), content_type=content_type,
                            headers={"Cache-Control": "public, max-age=300"})

    async def home(request: web.Request) -> web.Response:
        return redirect(f"{PREFIX}/runs")

    router = service.app.router
    router.add_get(PREFIX, home)
    router.add_get(PREFIX + "/", home)
    router.add_get(PREFIX + "/static/{name}", static)
    router.add_get(PREFIX + "/login", login_form)
    router.add_post(PREFIX + "/login", login)
    router.add_post(PREFIX + "/logout", page(logout))
    router.add_get(PREFIX + "/runs", page(runs_page))
    router.add_get(PREFIX + "/runs/{run_id}", page(run_page))
    router.add_post(PREFIX + "/runs/{run_id}/cancel", page(cancel))
    router.add_post(PREFIX + "/runs/{run_id}/replay", page(replay))
    router.add_get(PREFIX + "/test", page(test_page))
    router.add_post(PREFIX + "/test", page(run_test))
    router.add_get(PREFIX + "/schedules", page(schedules_list))
    router.add_post(PREFIX + "/schedules", page(schedule_create))
    router.add_post(PREFIX + "/schedules/{schedule_id}/{action:activate|deactivate|delete}", page(schedule_action))
    router.add_get(PREFIX + "/cron", page(cron_preview))
    router.add_get(PREFIX + "/queues", page(queues_page))
    router.add_post(PREFIX + "/queues/{name:.+}/{action:pause|resume}", page(queue_action))
    router.add_post(PREFIX + "/environment-limits", page(set_limits))
    router.add_get(PREFIX + "/environments", page(environments_page))
    router.add_post(PREFIX + "/environments", page(environment_switch))
    router.add_post(PREFIX + "/environments/{type}/key", page(environment_key))
