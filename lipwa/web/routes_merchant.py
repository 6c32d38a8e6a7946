"""Sign-in and merchant onboarding: provider accounts by form, test payment, setup status.

Routes:
  GET/POST /signin                 API key (merchant session) or admin token (admin session)
  POST     /signout
  GET      /merchants/{id}         accounts (credentials masked), add forms, test buttons
  POST     /merchants/{id}/accounts            add an account (secrets are write-only)
  POST     /merchants/{id}/accounts/{a}/test   send KES 1 / RWF 100 through it
  GET      /merchants/{id}/tests/{payment}     the test's live result
  GET/POST /merchants/{id}/accounts/{a}/live   admin only: mark a tested account live (confirm)

Setup status (ProviderAccount.setup_status): ``pending`` when added, ``tested`` once a test
payment through it succeeded, ``live`` by an explicit admin action (audited).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable
from typing import Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy import select

from lipwa.api.deps import ContainerDep
from lipwa.container import Container
from lipwa.domain.errors import DomainError
from lipwa.domain.states import describe_failure
from lipwa.errors import ApiError
from lipwa.services import accounts, audit
from lipwa.services.accounts import Caller
from lipwa.services.collect import PaymentIn
from lipwa.services.modes import mode_refusal
from lipwa.store.tables import ApiKey, Merchant, Payment, ProviderAccount
from lipwa.web.auth import current_session, safe_next, to_signin
from lipwa.web.render import render, security
from lipwa.web.security import Session

router = APIRouter(include_in_schema=False)

TEST_AMOUNTS = {"KES": "1", "RWF": "100", "UGX": "500", "EUR": "1"}
TEST_REFERENCE_PREFIX = "setup-"
MOMO_TARGETS = ("sandbox", "mtnrwanda", "mtnuganda")
MOMO_CURRENCIES = ("EUR", "RWF", "UGX")
FAILED_SIGNIN_DELAY_S = 0.5


# ----- sign in / out ---------------------------------------------------------------------------
@router.get("/signin")
async def signin_page(request: Request, c: ContainerDep) -> Response:
    return render(
        request, "signin.html", page_title="Sign in", next=request.query_params.get("next", "")
    )


@router.post("/signin")
async def signin(
    request: Request,
    c: ContainerDep,
    credential: str = Form("", max_length=300),
    next: str = Form("", max_length=300),
    csrf_token: str = Form("", max_length=128),
) -> Response:
    web = security(request)

    def refused(message: str, status: int) -> Response:
        return render(
            request, "signin.html", status=status, page_title="Sign in", error=message, next=next
        )

    if not web.csrf_ok(request, csrf_token):
        return refused("The form expired; please sign in again.", 403)
    credential = credential.strip()
    session: Session | None = None
    target = "/dashboard"
    if credential.startswith(("lw_test_", "lw_live_")):
        async with c.sessions() as db:
            caller = await accounts.authenticate(db, credential)
        if caller is not None and accounts_mode_ok(c, caller.mode):
            session = Session(
                "merchant", time.time(), caller.merchant_id, caller.mode, caller.key_id
            )
            target = f"/merchants/{caller.merchant_id}"
    elif credential and web.check_admin_token(credential):
        session = Session("admin", time.time(), admin_fp=web.admin_fingerprint())
    if session is None:
        await asyncio.sleep(FAILED_SIGNIN_DELAY_S)  # slows guessing; keys are 256-bit anyway
        return refused("That API key or admin token is not valid.", 401)
    response = RedirectResponse(safe_next(next, target), status_code=303)
    web.write_session(response, session)
    return response


def accounts_mode_ok(c: Container, mode: str) -> bool:
    return mode_refusal(c.settings.mode, mode) is None


@router.post("/signout")
async def signout(request: Request, csrf_token: str = Form("", max_length=128)) -> Response:
    web = security(request)
    response = RedirectResponse("/signin", status_code=303)
    if web.csrf_ok(request, csrf_token):
        web.clear_session(response)
    return response


# ----- the merchant page -----------------------------------------------------------------------
async def _guard(request: Request, c: Container, merchant_id: str) -> Session | Response:
    session = await current_session(request, c)
    if session is None:
        return to_signin(request)
    if not session.may_see(merchant_id):
        return render(
            request,
            "message.html",
            status=404,
            session=session,
            title="Not found",
            message="No such merchant.",
        )
    return session


def _environments(session: Session) -> list[str]:
    if session.is_admin:
        return ["sandbox", "production"]
    return [accounts.ENVIRONMENT_FOR_MODE[session.mode or "test"]]


async def refresh_setup_status(c: Container, merchant_id: str) -> None:
    """``pending`` → ``tested`` for accounts whose test payment succeeded (one short write,
    only when something changes)."""
    async with c.sessions() as db:
        pending = list(
            await db.scalars(
                select(ProviderAccount.id).where(
                    ProviderAccount.merchant_id == merchant_id,
                    ProviderAccount.setup_status == "pending",
                )
            )
        )
        if not pending:
            return
        passed = set(
            await db.scalars(
                select(Payment.account_id).where(
                    Payment.merchant_id == merchant_id,
                    Payment.account_id.in_(pending),
                    Payment.status == "succeeded",
                    Payment.reference.startswith(TEST_REFERENCE_PREFIX),
                )
            )
        )
    if not passed:
        return
    async with c.sessions() as db, db.begin():
        for account_id in passed:
            account = await db.get(ProviderAccount, account_id, with_for_update=True)
            if account is not None and account.setup_status == "pending":
                account.setup_status = "tested"
                await audit.record(
                    db, "lipwa", "account.setup_tested", account.id, merchant_id, "test payment"
                )


async def _merchant_page(
    request: Request,
    c: Container,
    session: Session,
    merchant_id: str,
    *,
    status: int = 200,
    form_error: str | None = None,
    form_provider: str | None = None,
    form_values: dict[str, str] | None = None,
    notice: str | None = None,
) -> Response:
    await refresh_setup_status(c, merchant_id)
    envs = _environments(session)
    async with c.sessions() as db:
        merchant = await db.get(Merchant, merchant_id)
        if merchant is None:
            return render(
                request,
                "message.html",
                status=404,
                session=session,
                title="Not found",
                message="No such merchant.",
            )
        # A merchant key's session sees its own environment's accounts only: a test key must
        # never learn a production account's callback URL (its token is the callback's secret).
        rows = [
            a for a in await accounts.list_accounts(db, merchant_id) if a.environment in envs
        ]
        keys = list(
            await db.scalars(
                select(ApiKey).where(ApiKey.merchant_id == merchant_id, ApiKey.revoked_at.is_(None))
            )
        )
    views = [accounts.account_view(a, c.settings.public_url) for a in rows]
    ids = {a.id for a in rows}
    added, live = request.query_params.get("added"), request.query_params.get("live")
    if notice is None and added in ids:
        notice = f"Account {added} added. Send a test payment to finish its setup."
    elif notice is None and live in ids:
        notice = f"Account {live} is live."
    return render(
        request,
        "merchant.html",
        status=status,
        session=session,
        page_title=f"{merchant.name} · setup",
        merchant=merchant,
        accounts=views,
        keys=keys,
        environments=envs,
        testable={a.id for a in rows if a.environment in envs and a.status == "active"},
        test_amounts=TEST_AMOUNTS,
        attempt=secrets.token_urlsafe(16),
        form_error=form_error,
        form_provider=form_provider,
        values=form_values or {},
        notice=notice,
        momo_targets=MOMO_TARGETS,
        momo_currencies=MOMO_CURRENCIES,
    )


@router.get("/merchants/{merchant_id}")
async def merchant_page(merchant_id: str, request: Request, c: ContainerDep) -> Response:
    session = await _guard(request, c, merchant_id)
    if isinstance(session, Response):
        return session
    return await _merchant_page(request, c, session, merchant_id)


def _credentials(provider: str, form: dict[str, str]) -> dict[str, Any]:
    if provider == "mpesa":
        creds: dict[str, Any] = {
            "consumer_key": form.get("consumer_key", ""),
            "consumer_secret": form.get("consumer_secret", ""),
            "shortcode": form.get("shortcode", ""),
            "kind": form.get("kind", "paybill"),
            "passkey": form.get("passkey", ""),
        }
        if form.get("till_number"):
            creds["till_number"] = form["till_number"]
        return creds
    keys = {"collection": form.get("collection_key", "")}
    if form.get("disbursement_key"):
        keys["disbursement"] = form["disbursement_key"]
    return {
        "api_user": form.get("api_user", ""),
        "api_key": form.get("api_key", ""),
        "subscription_keys": keys,
        "target_environment": form.get("target_environment", ""),
        "currency": form.get("currency", ""),
    }


# Fields never sent back to the browser, even after a refused submit.
SECRET_FIELDS = frozenset(
    {"consumer_key", "consumer_secret", "passkey", "api_key", "collection_key", "disbursement_key"}
)


def _explain(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ()))
    return f"{where}: {first.get('msg', 'invalid')}" if where else str(first.get("msg"))


@router.post("/merchants/{merchant_id}/accounts")
async def add_account(merchant_id: str, request: Request, c: ContainerDep) -> Response:
    session = await _guard(request, c, merchant_id)
    if isinstance(session, Response):
        return session
    form = {k: v for k, v in (await request.form()).items() if isinstance(v, str) and len(v) < 5000}
    provider = form.get("provider", "")
    if not security(request).csrf_ok(request, form.get("csrf_token")):
        return await _merchant_page(
            request, c, session, merchant_id, status=403, form_error="The form expired; try again."
        )
    environment = form.get("environment") or _environments(session)[0]
    kept = {k: v for k, v in form.items() if k not in SECRET_FIELDS and k != "csrf_token"}

    def refused(message: str) -> Awaitable[Response]:
        return _merchant_page(
            request,
            c,
            session,
            merchant_id,
            status=400,
            form_error=message,
            form_provider=provider,
            form_values=kept,
        )

    if provider not in {"mpesa", "momo"} or environment not in _environments(session):
        return await refused("Choose a provider and an environment this sign-in may use.")
    try:
        data = accounts.AccountIn(
            provider=provider,
            environment=environment,
            label=form.get("label", "")[:200],
            base_url=form.get("base_url") or None,
            credentials=_credentials(provider, form),
        )
        async with c.sessions() as db, db.begin():
            account = await accounts.create_account(db, c.vault, merchant_id, data)
            actor = "admin" if session.is_admin else f"key:{session.key_id}"
            detail = {"provider": account.provider, "environment": account.environment}
            await audit.record(db, actor, "account.created", account.id, merchant_id, "", detail)
    except ValidationError as exc:
        return await refused(_explain(exc))
    except DomainError as exc:
        return await refused(exc.message)
    return await _merchant_page(
        request,
        c,
        session,
        merchant_id,
        status=201,
        notice=f"Account {account.id} added. Send a test payment to finish its setup.",
    )


def _test_caller(session: Session, merchant_id: str, account: ProviderAccount) -> Caller | None:
    mode = "test" if account.environment == "sandbox" else "live"
    if session.is_admin:
        return Caller(merchant_id, mode, "dashboard:admin")
    if session.mode != mode:
        return None
    return Caller(merchant_id, mode, session.key_id or "")


@router.post("/merchants/{merchant_id}/accounts/{account_id}/test")
async def send_test(
    merchant_id: str,
    account_id: str,
    request: Request,
    c: ContainerDep,
    phone: str = Form("", max_length=40),
    attempt: str = Form("", max_length=64),
    csrf_token: str = Form("", max_length=128),
) -> Response:
    session = await _guard(request, c, merchant_id)
    if isinstance(session, Response):
        return session
    if not security(request).csrf_ok(request, csrf_token) or len(attempt) < 16:
        return await _merchant_page(
            request, c, session, merchant_id, status=403, notice="The form expired; try again."
        )
    async with c.sessions() as db:
        account = await db.get(ProviderAccount, account_id)
    if account is None or account.merchant_id != merchant_id:
        return await _merchant_page(
            request, c, session, merchant_id, status=404, notice="No such account."
        )
    caller = _test_caller(session, merchant_id, account)
    if caller is None:
        return await _merchant_page(
            request,
            c,
            session,
            merchant_id,
            status=403,
            notice=f"A {session.mode} key cannot test a {account.environment} account.",
        )
    data = PaymentIn(
        amount=TEST_AMOUNTS.get(account.currency, "1"),
        currency=account.currency,
        phone=phone,
        reference=f"{TEST_REFERENCE_PREFIX}{attempt[:6]}",
        description="Lipwa setup test",
        metadata={"source": "setup_test", "account_id": account.id},
        account_id=account.id,  # this account, not the merchant's first of its kind
    )
    try:
        outcome = await c.collect.create(caller, data, f"setup:{account.id}:{attempt}")
    except ApiError as exc:
        return await _merchant_page(
            request,
            c,
            session,
            merchant_id,
            status=400,
            notice=f"Test payment refused: {exc.message}",
        )
    return RedirectResponse(f"/merchants/{merchant_id}/tests/{outcome.body['id']}", status_code=303)


@router.get("/merchants/{merchant_id}/tests/{payment_id}")
async def test_result(
    merchant_id: str, payment_id: str, request: Request, c: ContainerDep
) -> Response:
    session = await _guard(request, c, merchant_id)
    if isinstance(session, Response):
        return session
    async with c.sessions() as db:
        payment = await db.get(Payment, payment_id, populate_existing=True)
    # A key's session sees its own mode only, like GET /v1/payments/{id}.
    if (
        payment is None
        or payment.merchant_id != merchant_id
        or not (session.is_admin or payment.mode == session.mode)
        or not payment.reference.startswith(TEST_REFERENCE_PREFIX)
    ):
        return render(
            request,
            "message.html",
            status=404,
            session=session,
            title="Not found",
            message="No such test payment.",
        )
    await refresh_setup_status(c, merchant_id)
    async with c.sessions() as db:
        account = await db.get(ProviderAccount, payment.account_id)
    return render(
        request,
        "test_result.html",
        session=session,
        page_title="Test payment",
        payment=payment,
        account=account,
        merchant_id=merchant_id,
        token=security(request).payment_token(payment.id),
        explanation=describe_failure(payment.failure_code) if payment.status == "failed" else "",
    )


@router.get("/merchants/{merchant_id}/accounts/{account_id}/live")
async def live_confirm(
    merchant_id: str, account_id: str, request: Request, c: ContainerDep
) -> Response:
    session = await _guard(request, c, merchant_id)
    if isinstance(session, Response):
        return session
    if not session.is_admin:
        return render(
            request,
            "message.html",
            status=403,
            session=session,
            title="Admins only",
            message="Only an operator can mark an account live.",
        )
    async with c.sessions() as db:
        account = await db.get(ProviderAccount, account_id)
    if account is None or account.merchant_id != merchant_id:
        return render(
            request,
            "message.html",
            status=404,
            session=session,
            title="Not found",
            message="No such account.",
        )
    return render(
        request,
        "live_confirm.html",
        session=session,
        page_title="Mark account live",
        account=accounts.account_view(account, c.settings.public_url),
        merchant_id=merchant_id,
    )


@router.post("/merchants/{merchant_id}/accounts/{account_id}/live")
async def live_apply(
    merchant_id: str,
    account_id: str,
    request: Request,
    c: ContainerDep,
    confirm: str = Form(""),
    reason: str = Form("", max_length=300),
    csrf_token: str = Form("", max_length=128),
) -> Response:
    session = await _guard(request, c, merchant_id)
    if isinstance(session, Response):
        return session
    if not session.is_admin or not security(request).csrf_ok(request, csrf_token):
        return render(
            request,
            "message.html",
            status=403,
            session=session,
            title="Refused",
            message="Only an operator can mark an account live (and the form expired).",
        )
    async with c.sessions() as db, db.begin():
        account = await db.get(ProviderAccount, account_id, with_for_update=True)
        if account is None or account.merchant_id != merchant_id:
            return render(
                request,
                "message.html",
                status=404,
                session=session,
                title="Not found",
                message="No such account.",
            )
        view = accounts.account_view(account, c.settings.public_url)
        problem = None
        if account.setup_status != "tested":
            problem = f"The account is {account.setup_status}: a test payment must succeed first."
        elif confirm != "yes" or not reason.strip():
            problem = "Tick the confirmation and say why."
        if problem:
            return render(
                request,
                "live_confirm.html",
                status=400,
                session=session,
                page_title="Mark account live",
                account=view,
                merchant_id=merchant_id,
                error=problem,
            )
        account.setup_status = "live"
        await audit.record(db, "admin", "account.setup_live", account.id, merchant_id, reason)
    return RedirectResponse(f"/merchants/{merchant_id}?live={account_id}", status_code=303)
