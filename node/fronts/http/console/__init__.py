"""The web console under ``/console/`` on the HTTP port (docs/console.md): server-rendered
pages in Chinese and English for operators (health and live charts, enterprises, the
prefix review queue, signing keys) and enterprise admins (their prefixes and
identifiers, records through their template's form, CSV import), behind a login with
the admin's identity and secret.

Why the HTTP port and not the admin port: enterprise admins are remote, and the admin
port (health, metrics) stays on loopback by default. ``console_routes`` is an
``http_app`` extension; add it before the record page's catch-all.
"""

from __future__ import annotations

import logging

from aiohttp import web

from node.auth import parse_admin_list
from node.auth.roles import RoleCheck
from node.fronts.http.app import Extension
from node.fronts.http.console import enterprise, forms, importjob, login, operator
from node.fronts.http.console.charts import Sampler
from node.fronts.http.console.context import CONSOLE_KEY, Console, Ctx, see_other, view
from node.fronts.http.console.sessions import ConsoleSessions
from node.fronts.http.manage import MANAGE_KEY, manage_routes
from node.fronts.http.services import SERVICES_KEY
from registry.console import ConsoleStore

__all__ = ["CONSOLE_KEY", "Console", "console_routes"]
log = logging.getLogger("idnode.console")


@view
async def home(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    return see_other("/console/dashboard" if ctx.roles.sees_all else "/console/prefixes")


async def slash(request: web.Request) -> web.StreamResponse:
    return see_other("/console/")


def console_routes() -> Extension:
    def extend(app: web.Application) -> None:
        svc = app[SERVICES_KEY]
        s = svc.settings
        if not s.console_enabled:
            return
        if MANAGE_KEY not in app:
            manage_routes()(app)  # the console reviews through the same Onboarding
        manage = app[MANAGE_KEY]
        # Sessions and import jobs are registry rows: any worker or node on this registry
        # knows them (docs/console.md).
        store = ConsoleStore(svc.resolver.registry)
        console = Console(
            ConsoleSessions(
                store,
                max_sessions=s.console_sessions_max,
                max_per_identity=s.console_sessions_per_identity_max,
                idle_timeout_s=s.console_session_idle_timeout_s,
                lifetime_s=s.console_session_lifetime_s,
                clock=svc.clock,
            ),
            RoleCheck(svc.authorizer, svc.resolver.registry, parse_admin_list(s.auditors)),
            manage.onboarding,
            Sampler(
                svc.metrics.registry,
                interval_s=s.console_sample_interval_s,
                keep=s.console_samples,
                clock=svc.clock,
            ),
            importjob.ImportJobs(svc, store),
        )
        app[CONSOLE_KEY] = console

        async def started(app: web.Application) -> None:
            console.sampler.start()

        async def stopping(app: web.Application) -> None:
            await console.sampler.stop()
            await console.imports.close()

        app.on_startup.append(started)
        app.on_cleanup.append(stopping)
        r = app.router
        r.add_get("/console", slash, name="console_slash")
        r.add_get("/console/", home, name="console_home")
        r.add_get("/console/login", login.show_login, name="console_login")
        r.add_post("/console/login", login.do_login, name="console_login_post")
        r.add_post("/console/logout", login.logout, name="console_logout")
        r.add_get("/console/dashboard", operator.dashboard, name="console_dashboard")
        r.add_get("/console/enterprises", operator.enterprises, name="console_enterprises")
        r.add_get("/console/reviews", operator.reviews, name="console_reviews")
        r.add_post("/console/reviews/{prefix}", operator.review, name="console_review")
        r.add_get("/console/keys", operator.keys, name="console_keys")
        r.add_get("/console/prefixes", enterprise.prefixes, name="console_prefixes")
        r.add_get("/console/prefixes/{prefix}", enterprise.prefix_page, name="console_prefix")
        r.add_get("/console/prefixes/{prefix}/new", forms.new_form, name="console_new")
        r.add_post("/console/prefixes/{prefix}/new", forms.create, name="console_create")
        r.add_get(r"/console/records/{handle:.+}/edit", forms.edit_form, name="console_edit")
        r.add_post(r"/console/records/{handle:.+}/edit", forms.update, name="console_update")
        r.add_get(r"/console/records/{handle:.+}", enterprise.record_page, name="console_record")
        r.add_get("/console/imports", importjob.imports_page, name="console_imports")
        r.add_post("/console/imports", importjob.start_import, name="console_import")
        r.add_get("/console/imports/{job}", importjob.job_page, name="console_job")

    return extend
