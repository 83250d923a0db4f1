"""The operator's pages: health and live charts, enterprises, the prefix review queue
with the auditor's actions, and the signing keys and certificates.

Platform admins and auditors see them (``Roles.sees_all``); reviewing is for auditors
and platform admins, as on ``/api/manage`` (node.fronts.http.manage), through the same
``Onboarding`` service, so a review here and one over the API are the same step with the
same history row.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from aiohttp import web

from node.fronts.http.console import layout
from node.fronts.http.console.charts import line_chart
from node.fronts.http.console.context import Ctx, Refused, denied, view
from node.fronts.http.console.i18n import status_word
from node.fronts.http.console.layout import e, href
from node.signing.expiry import signing_cert_expiry
from protocol.errors import HandleSyntaxError
from registry.errors import DatabaseUnavailable, QueryFailed, RegistryError
from registry.reviews import REVIEWS
from registry.rows import PrefixStatus

REFRESH_S = 10
QUEUE = (PrefixStatus.AWAITING_REVIEW, PrefixStatus.UNDER_REVIEW)
# How the moves are listed: onward first, the ones taking something away after.
MOVE_ORDER = (
    PrefixStatus.UNDER_REVIEW,
    PrefixStatus.ENABLED,
    PrefixStatus.AWAITING_REVIEW,
    PrefixStatus.REJECTED,
    PrefixStatus.DISABLED,
    PrefixStatus.PENDING_DELETION,
)


def _operator(ctx: Ctx) -> None:
    if not ctx.roles.sees_all:
        raise denied(f"{ctx.identity.actor}: {ctx.t('platform_admin')} / {ctx.t('auditor')}")


def _time(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


async def _registry_answers(ctx: Ctx) -> bool:
    """Asked now, as /readyz asks (the idnode_ready gauge is only as fresh as the last
    /readyz)."""
    try:
        await asyncio.wait_for(ctx.svc.resolver.registry.ping(), ctx.svc.settings.db_timeout_s)
    except (TimeoutError, RegistryError):
        return False
    return True


@view
async def dashboard(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    _operator(ctx)
    sampler = ctx.console.sampler
    samples = list(sampler.samples)
    t = ctx.t
    state = (
        layout.notice(t("ready"), "ok")
        if await _registry_answers(ctx)
        else layout.notice(t("not_ready"), "err")
    )
    if not samples:
        content = state + layout.notice(t("no_samples"))
    else:
        charts = [
            (t("qps"), line_chart([(t("qps"), [s.qps for s in samples])])),
            (
                t("hit_ratio"),
                line_chart(
                    [("%", [None if s.hit_ratio is None else 100 * s.hit_ratio for s in samples])],
                    floor_max=100,
                ),
            ),
            (
                t("latency"),
                line_chart(
                    [("p50", [s.p50_ms for s in samples]), ("p99", [s.p99_ms for s in samples])]
                ),
            ),
            (t("errors"), line_chart([(t("errors"), [s.errors_per_s for s in samples])])),
            (
                t("registry"),
                line_chart(
                    [
                        (t("in_use"), [s.pool_in_use for s in samples]),
                        (t("waiting"), [s.pool_waiting for s in samples]),
                    ]
                ),
            ),
            (
                t("upstream"),
                line_chart(
                    [
                        (t("upstream"), [s.upstream_per_s for s in samples]),
                        (t("failed"), [s.upstream_failed_per_s for s in samples]),
                    ]
                ),
            ),
        ]
        span = int(sampler.interval_s * len(samples))
        content = (
            state
            + f'<p class="muted">{e(t("span"))} {span} {e(t("seconds"))}</p><div class="grid">'
            + "".join(f"<section><h2>{e(title)}</h2>{svg}</section>" for title, svg in charts)
            + "</div>"
        )
    return layout.reply(
        layout.framed(ctx.page(request), t("dashboard"), content, refresh_s=REFRESH_S)
    )


@view
async def enterprises(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    registry = ctx.svc.resolver.registry
    ents, prefixes = await asyncio.gather(registry.list_enterprises(), registry.list_prefixes())
    by_code: dict[str, list[str]] = {}
    for p in prefixes:
        by_code.setdefault(p.credit_code, []).append(
            f'<a href="{href("prefixes/" + layout.handle_path(p.prefix))}">{e(p.prefix)}</a> '
            f'<span class="muted">{e(status_word(ctx.lang, int(p.status)))}</span>'
        )
    rows = [
        (
            e(x.name),
            f"<code>{e(x.credit_code)}</code>",
            e(x.contact),
            "<br>".join(by_code.get(x.credit_code, [])),
            e(_time(x.created_at)),
        )
        for x in ents
        if ctx.roles.may_see(x.credit_code)
    ]
    t = ctx.t
    content = f"<section>{layout.table([t('name'), t('credit_code'), t('contact'), t('prefixes'), t('created')], rows)}</section>"
    return layout.reply(layout.framed(ctx.page(request), t("enterprises"), content))


def _review_form(ctx: Ctx, prefix: str, status: PrefixStatus) -> str:
    choices = sorted(REVIEWS[status], key=MOVE_ORDER.index)
    if not choices or not (ctx.roles.auditor or ctx.roles.platform_admin):
        return ""
    # Nothing chosen until the reviewer chooses: a click alone moves no prefix.
    options = f'<option value="" selected disabled>{e(ctx.t("review_to"))}…</option>' + "".join(
        f'<option value="{int(s)}">{e(status_word(ctx.lang, int(s)))}</option>' for s in choices
    )
    assert ctx.session is not None
    return (
        f'<form class="inline" method="post" action="{href("reviews/" + layout.handle_path(prefix))}">'
        f"{layout.csrf_field(ctx.session.csrf)}"
        f'<select name="status" aria-label="{e(ctx.t("review_to"))}">{options}</select>'
        f'<input name="reason" placeholder="{e(ctx.t("reason"))}" maxlength="500">'
        f'<button type="submit">{e(ctx.t("review_to"))}</button></form>'
    )


async def _queue(request: web.Request, ctx: Ctx, message: str = "") -> web.Response:
    _operator(ctx)
    prefixes = await ctx.svc.resolver.registry.list_prefixes()
    t = ctx.t
    waiting = [p for p in prefixes if p.status in QUEUE]
    heads = [t("prefix"), t("enterprise"), t("status"), t("updated"), t("action")]
    rows = [
        (
            f"<code>{e(p.prefix)}</code>",
            f"{e(p.enterprise_name)}<br><code>{e(p.credit_code)}</code>",
            e(status_word(ctx.lang, int(p.status))),
            e(_time(p.updated_at)),
            _review_form(ctx, p.prefix, p.status),
        )
        for p in waiting
    ]
    queue = layout.table(heads, rows) if rows else f"<p>{e(t('queue_empty'))}</p>"
    others = [
        (
            f"<code>{e(p.prefix)}</code>",
            e(p.enterprise_name),
            e(status_word(ctx.lang, int(p.status))),
            e(_time(p.updated_at)),
            _review_form(ctx, p.prefix, p.status),
        )
        for p in prefixes
        if p.status not in QUEUE
    ]
    content = (
        message
        + f"<section><h2>{e(t('reviews'))}</h2>{queue}</section>"
        + f"<section><h2>{e(t('all_prefixes'))}</h2>{layout.table(heads, others)}</section>"
    )
    return layout.reply(layout.framed(ctx.page(request), t("reviews"), content))


@view
async def reviews(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    return await _queue(request, ctx)


@view
async def review(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    _operator(ctx)
    if not (ctx.roles.auditor or ctx.roles.platform_admin):
        raise denied(f"{ctx.identity.actor}: {ctx.t('auditor')}")
    prefix = request.match_info["prefix"]
    try:
        to = PrefixStatus.parse(ctx.field("status"))
    except ValueError as exc:
        raise Refused(400, "error", str(exc)) from None
    try:
        step = await ctx.console.onboarding.review(
            prefix, to, actor=ctx.identity.actor, reason=ctx.field("reason"), now=ctx.svc.now()
        )
    except (DatabaseUnavailable, QueryFailed):
        raise
    except (RegistryError, HandleSyntaxError) as exc:
        return await _queue(request, ctx, layout.notice(str(exc), "err"))
    done = f"{ctx.t('reviewed')}: {step.prefix.prefix} → {status_word(ctx.lang, int(to))}"
    message = layout.notice(done, "ok")
    if step.credentials is not None:  # shown this once, never again
        c = step.credentials
        message += (
            f'<section class="notice"><p>{e(ctx.t("credentials_once"))}</p>'
            f"<pre>{e(c.admin)}\n{e(c.secret)}</pre></section>"
        )
    return await _queue(request, ctx, message)


@view
async def keys(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    _operator(ctx)
    t = ctx.t
    signer = ctx.svc.writes.signer
    roots = len(ctx.svc.trust_roots)
    if signer is None:
        content = layout.notice(t("signing_off"))
    else:
        now = int(ctx.svc.clock())
        served = ctx.svc.resolver.served.all()
        expiry = signing_cert_expiry(signer, served, now)
        alg = getattr(signer.key.alg, "value", signer.key.alg)
        mode = t("deployment_cert") if signer.deployment_cert is not None else t("embedded_root")
        key_rows = [
            (e(t("algorithm")), f"<code>{e(alg)}</code>"),
            (e(t("key_id")), f"<code>{e(signer.key.kid or '-')}</code>"),
            (e(t("cert_index")), e(signer.key_index)),
            (e(t("type")), e(mode)),
        ]
        cert_rows = [
            (
                f"<code>{e(subject)}</code>",
                e(datetime.fromtimestamp(exp, UTC).strftime("%Y-%m-%d %H:%M UTC")),
                e(f"{(exp - now) / 86400:.1f}"),
            )
            for subject, exp in sorted(expiry.items())
        ]
        content = (
            f"<section><h2>{e(t('keys'))}</h2>{layout.table([t('field'), t('value')], key_rows)}</section>"
            f"<section>{layout.table([t('cert_subject'), t('expires'), t('days_left')], cert_rows)}</section>"
        )
    content += f'<p class="muted">{e(t("trust_roots"))}: {roots}</p>'
    return layout.reply(layout.framed(ctx.page(request), t("keys"), content))
