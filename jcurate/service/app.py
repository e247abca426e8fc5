"""``jcurate serve``: the scoring and provenance service (FastAPI).

Endpoints (OpenAPI at ``/openapi.json``, interactive docs at ``/docs``):

* ``POST /v1/score``: what the pipeline would decide about new records (read, quality,
  language, exact and near duplicates against the store), the shipped scorer's score (the one
  ``jcurate run`` stores as ``shipped``), the store's classifier score, and the LLM judge when
  asked for and configured.
* ``GET /v1/records/{record_id}``, ``GET /v1/records?q=``: provenance of stored records.
* ``GET /v1/sources``: sources x licenses x kept/dropped in the latest run.
* ``GET /v1/subsets``, ``GET /v1/subsets/{name}``, ``GET /v1/subsets/{name}/notice``.
* ``POST /v1/sql``: read-only SQL with a row and a time limit.
* ``GET /healthz``; ``GET /``: the provenance page for people who do not write SQL.

With a token (``JCURATE_TOKEN``, ``--token-file`` or ``--token``; required when binding to a
non-loopback address) every route but ``/healthz`` needs ``Authorization: Bearer TOKEN``; the
page takes ``/?token=TOKEN`` once and keeps it in a cookie. Without the token ``/healthz`` says
only whether the service is up, not where the store is or what it holds. Every answer carries
``X-Content-Type-Options: nosniff``, and the page a ``Content-Security-Policy`` that allows
nothing but itself (no scripts, no third-party sources).
"""

from __future__ import annotations

import hmac
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import Body, FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse
from pydantic import AliasChoices, BaseModel, Field, model_validator

from curate.handover.subsets import subset_exists
from jcurate.service import page, provenance
from jcurate.service.scoring import JudgeUnavailable, LiveScorer
from jcurate.service.store_access import QueryError, StoreBusy, read_only, run_sql
from licenses.catalogue import load_catalogue
from store.runs import latest_run_id

TOKEN_COOKIE = "jcurate_token"
# the page is server-rendered HTML with inline styles, plain links and a GET form: nothing else may
# load. /docs and /redoc (FastAPI's Swagger UI and ReDoc, scripts from a CDN) are left without it.
PAGE_POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; " \
              "base-uri 'none'; frame-ancestors 'none'"


@dataclass
class ServeSettings:
    db: str
    token: str | None = None
    config: str | None = None  # a pipeline config for the judge: section (default: the latest run's)
    max_batch: int = 256  # records per POST /v1/score
    max_text_chars: int = 20_000  # characters per record, all fields together
    max_body_bytes: int = 8 * 1024 * 1024
    sql_max_rows: int = 10_000
    sql_timeout: float = 10.0
    reload_interval: float = 60.0  # seconds between looks for a newer run (0: never)


class Turn(BaseModel):
    """A turn as `jcurate run` reads one: `{role, content}` or ShareGPT's `{from, value}`."""

    role: str = Field(validation_alias=AliasChoices("role", "from"),
                      description="system, user or assistant (ShareGPT's `from` with human / gpt is accepted)")
    content: str = Field(validation_alias=AliasChoices("content", "value"),
                         description="the turn's text (ShareGPT's `value` is accepted)")


class RecordIn(BaseModel):
    """A single-turn record (instruction, optional input, output) or a conversation (messages)."""

    id: str | None = Field(None, max_length=512, description="your id; echoed back (default request:INDEX)")
    instruction: str | None = None
    input: str | None = None
    output: str | None = None
    messages: list[Turn] | None = None

    @model_validator(mode="after")
    def _one_form(self):
        """A record with both forms would be scored as one of them without saying which: refused instead."""
        if self.messages is not None and any(v is not None for v in (self.instruction, self.input, self.output)):
            raise ValueError("give either instruction/input/output or messages, not both")
        return self


class ScoreRequest(BaseModel):
    records: list[RecordIn]
    judge: bool = Field(False, description="also ask the LLM judge (needs a judge: section in the config)")
    near_duplicates: int = Field(10, ge=0, le=100, description="at most this many near-duplicate hits per record")


class ScoreResponse(BaseModel):
    run_id: str
    shipped_scorer: str
    classifier: str | None
    elapsed_ms: float
    results: list[dict[str, Any]]


class SqlRequest(BaseModel):
    query: str = Field(description="SQL over the store; the connection is read-only")
    max_rows: int | None = Field(None, ge=1, description="at most the server's --sql-max-rows")


class SqlResponse(BaseModel):
    columns: list[str]
    rows: list[list[Any]]
    row_count: int
    truncated: bool
    truncated_by: str | None = Field(None, description="rows or bytes: the cap that cut the answer short")
    max_rows: int
    max_bytes: int
    elapsed_ms: float


ERRORS = {401: {"description": "missing or wrong token"}, 503: {"description": "the store is being written"}}


def _check_text(records: list[RecordIn], s: ServeSettings) -> None:
    """413 for a record over the text limit, 422 for text that is not valid Unicode (lone surrogates)."""
    for i, rec in enumerate(records):
        texts = {name: getattr(rec, name) for name in ("id", "instruction", "input", "output")}
        for j, turn in enumerate(rec.messages or []):
            texts[f"messages[{j}].content"] = turn.content
            texts[f"messages[{j}].role"] = turn.role
        total = 0
        for field, value in texts.items():
            if value is None:
                continue
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise HTTPException(422, f"records[{i}].{field}: not valid Unicode (a lone surrogate)") from None
            if field != "id":
                total += len(value)
        if total > s.max_text_chars:
            raise HTTPException(413, f"records[{i}]: {total} characters of text, over the limit of "
                                     f"{s.max_text_chars} per record (serve --max-text-chars)")


def _undecodable(body: bytes) -> str | None:
    """Why a JSON body cannot be decoded (a Shift-JIS body, say), naming the byte; None when it can.
    JSON is UTF-8 (or UTF-16/32, which the parser detects); without this check the parser's failure
    is a 400 that names nothing."""
    encoding = json.detect_encoding(body)
    try:
        body.decode(encoding)
    except UnicodeDecodeError as e:
        return (f"request body: not valid {encoding.upper()} (byte 0x{body[e.start]:02x} at offset {e.start}); "
                f"send the JSON encoded as UTF-8 (not Shift-JIS or another legacy encoding)")
    return None


class BodyLimit:
    """ASGI middleware: a request body is read here, counting the bytes as they arrive, and refused with
    413 as soon as it passes ``limit`` — chunked bodies too, which carry no Content-Length. What was
    read (at most ``limit`` bytes) is handed on to the app."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            size += len(body)
            if size > self.limit:
                response = JSONResponse({"detail": f"request body over the limit of {self.limit} bytes "
                                                   f"(serve --max-body-bytes)"}, status_code=413)
                return await response(scope, receive, send)
            chunks.append(body)
            if not message.get("more_body"):
                break
        whole, handed = b"".join(chunks), False
        undecodable = _undecodable(whole)
        if undecodable:
            return await JSONResponse({"detail": undecodable}, status_code=422)(scope, receive, send)

        async def replay():
            nonlocal handed
            if not handed:
                handed = True
                return {"type": "http.request", "body": whole, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def create_app(settings: ServeSettings) -> FastAPI:
    if not Path(settings.db).is_file():
        raise FileNotFoundError(settings.db)
    catalogue = load_catalogue()
    config = None
    if settings.config:
        from curate.config import load_config

        config = load_config(settings.config)
    live = LiveScorer(settings.db, config, settings.reload_interval)
    app = FastAPI(title="jcurate", version="0.1.0",
                  description="Scoring and provenance service for curated Japanese instruction data.")
    app.state.settings, app.state.scorer = settings, live
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)

    @app.middleware("http")
    async def guard(request: Request, call_next):
        length = request.headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                return JSONResponse({"detail": "Content-Length is not a number"}, status_code=400)
            if int(length) > settings.max_body_bytes:
                return JSONResponse({"detail": f"request body of {length} bytes is over the limit of "
                                               f"{settings.max_body_bytes} (serve --max-body-bytes)"}, status_code=413)
        if settings.token and request.url.path != "/healthz" and not _authorised(request, settings.token):
            offered = request.query_params.get("token", "").encode()
            if request.url.path == "/" and hmac.compare_digest(offered, settings.token.encode()):
                response = RedirectResponse("/", status_code=303)
                response.set_cookie(TOKEN_COOKIE, settings.token, httponly=True, samesite="strict")
                return response
            return JSONResponse({"detail": "missing or wrong token: send 'Authorization: Bearer TOKEN' "
                                           "(the page: open /?token=TOKEN once)"}, status_code=401,
                                headers={"WWW-Authenticate": "Bearer"})
        live.get()  # any request, a GET or /healthz too, may start the (background) look for a newer run
        response = await call_next(request)
        response.headers["X-Content-Type-Options"] = "nosniff"
        if not request.url.path.startswith(("/docs", "/redoc")):
            response.headers.setdefault("Content-Security-Policy", PAGE_POLICY)
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        return response

    @app.exception_handler(StoreBusy)
    async def busy(request: Request, exc: StoreBusy):
        return JSONResponse({"detail": str(exc)}, status_code=503, headers={"Retry-After": "5"})

    @app.get("/healthz", tags=["service"])
    def healthz(request: Request) -> dict[str, Any]:
        if settings.token and not _authorised(request, settings.token):
            return {"status": "ok"}  # where the store is and what it holds is for token holders
        return {"status": "ok", "db": settings.db, **live.describe()}

    @app.post("/v1/score", response_model=ScoreResponse, tags=["scoring"], responses={
        413: {"description": "a batch or record over a limit (named in detail)"},
        **ERRORS, 503: {"description": "the store is being written, or judge=true and the judge's server "
                                       "does not answer (named in detail)"}})
    def score(request: ScoreRequest = Body(...)):
        if len(request.records) > settings.max_batch:
            raise HTTPException(413, f"batch of {len(request.records)} records is over the limit of "
                                     f"{settings.max_batch} records per request (serve --max-batch)")
        _check_text(request.records, settings)
        scorer = live.get()
        if request.judge and not scorer.judge_configured:
            raise HTTPException(422, "judge=true, but no judge is configured: start the server with --config "
                                     "FILE whose judge: section names a model (judge.model)")
        start = time.perf_counter()
        try:
            results = scorer.score([r.model_dump() for r in request.records], judge=request.judge,
                                   near_limit=request.near_duplicates)
        except JudgeUnavailable as e:
            raise HTTPException(503, str(e)) from None
        return {"run_id": scorer.run_id, "shipped_scorer": scorer.shipped.model_id,
                "classifier": scorer.classifier_id if scorer.classifier else None,
                "elapsed_ms": round((time.perf_counter() - start) * 1000, 2), "results": results}

    @app.get("/v1/records", tags=["provenance"], responses=ERRORS)
    def search_records(q: str = Query(..., min_length=1, max_length=500,
                                      description="a record id or a part of one, or a fragment of its text"),
                       limit: int = Query(provenance.SEARCH_LIMIT, ge=1, le=500)) -> dict[str, Any]:
        """The first ``limit`` matches in record id order; ``truncated`` says that more records match."""
        with read_only(settings.db) as con:
            return {"query": q, **provenance.search_results(con, q, limit)}

    @app.get("/v1/records/{record_id:path}", tags=["provenance"], responses={404: {"description": "no such record"},
                                                                            **ERRORS})
    def get_record(record_id: str) -> dict[str, Any]:
        with read_only(settings.db) as con:
            found = provenance.record(con, record_id, catalogue)
        if found is None:
            raise HTTPException(404, f"no record {record_id!r} in the store (search: GET /v1/records?q=FRAGMENT)")
        return found

    @app.get("/v1/sources", tags=["provenance"], responses=ERRORS)
    def sources() -> dict[str, Any]:
        with read_only(settings.db) as con:
            return {"run_id": latest_run_id(con), "sources": provenance.sources_overview(con)}

    @app.get("/v1/subsets", tags=["subsets"], responses=ERRORS)
    def list_subsets() -> dict[str, Any]:
        with read_only(settings.db) as con:
            return {"subsets": provenance.subsets(con, catalogue)}

    @app.get("/v1/subsets/{name}", tags=["subsets"], responses={404: {"description": "no such subset"}, **ERRORS})
    def get_subset(name: str) -> dict[str, Any]:
        with read_only(settings.db) as con:
            found = provenance.subset(con, name, catalogue)
        if found is None:
            raise HTTPException(404, f"no subset {name!r} (list: GET /v1/subsets)")
        return found

    @app.get("/v1/subsets/{name}/notice", response_class=PlainTextResponse, tags=["subsets"],
             responses={200: {"content": {"text/markdown": {}}}, 404: {"description": "no such subset"}, **ERRORS})
    def get_notice(name: str):
        with read_only(settings.db) as con:
            if not subset_exists(con, name):
                raise HTTPException(404, f"no subset {name!r} (list: GET /v1/subsets)")
            text = provenance.notice(con, name, catalogue)
        return PlainTextResponse(text, media_type="text/markdown; charset=utf-8")

    @app.post("/v1/sql", response_model=SqlResponse, tags=["sql"], responses={
        400: {"description": "the query failed"}, 403: {"description": "a write or file access, refused"},
        408: {"description": "over the time limit"}, **ERRORS})
    def sql(request: SqlRequest = Body(...)):
        max_rows = min(request.max_rows or settings.sql_max_rows, settings.sql_max_rows)
        try:
            return run_sql(settings.db, request.query, max_rows, settings.sql_timeout)
        except QueryError as e:
            raise HTTPException(e.status, e.message) from None

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def home(q: str | None = None):
        with read_only(settings.db) as con:
            return page.home(con, catalogue, q)

    @app.get("/drops", response_class=HTMLResponse, include_in_schema=False)
    def drops_page(source: str | None = None, stage: str | None = None, reason: str | None = None,
                   page_no: int = Query(1, alias="page", ge=1, le=1_000_000),
                   sample: int | None = Query(None, ge=1, le=500), seed: int = Query(0, ge=0, le=2**31)):
        with read_only(settings.db) as con:
            unknown = provenance.unknown_drops_filter(con, source, stage)
            if unknown:
                return HTMLResponse(page.drops_not_found(unknown), status_code=404)
            return page.drops(provenance.drops(con, source, stage, reason, page_no, sample, seed))

    @app.get("/v1/drops", tags=["provenance"],
             responses={**ERRORS, 404: {"description": "a source the latest run did not read, or no such stage"}})
    def drops_api(source: str | None = None, stage: str | None = None, reason: str | None = None,
                  page_no: int = Query(1, alias="page", ge=1, le=1_000_000),
                  sample: int | None = Query(None, ge=1, le=500), seed: int = Query(0, ge=0, le=2**31)) -> dict[str, Any]:
        """The latest run's drops of a source at a stage (and reason): a page of 50 in record order, or a
        random sample; each with its answer, prompt, reason and the value that decided."""
        with read_only(settings.db) as con:
            unknown = provenance.unknown_drops_filter(con, source, stage)
            if unknown:
                raise HTTPException(404, unknown)
            return provenance.jsonable(provenance.drops(con, source, stage, reason, page_no, sample, seed))

    @app.get("/records/{record_id:path}", response_class=HTMLResponse, include_in_schema=False)
    def record_page(record_id: str):
        with read_only(settings.db) as con:
            found = provenance.record(con, record_id, catalogue)
        return HTMLResponse(page.record(record_id, found), status_code=200 if found else 404)

    @app.get("/subsets/{name}", response_class=HTMLResponse, include_in_schema=False)
    def subset_page(name: str):
        with read_only(settings.db) as con:
            found = provenance.subset(con, name, catalogue)
            notice = provenance.notice(con, name, catalogue) if found else None
        return HTMLResponse(page.subset(name, found, notice), status_code=200 if found else 404)

    return app


SETTINGS_ENV = "JCURATE_SERVE_SETTINGS"


def app_from_env() -> FastAPI:
    """The app factory uvicorn calls in each worker process (``jcurate serve --workers N``)."""
    import os

    return create_app(ServeSettings(**json.loads(os.environ[SETTINGS_ENV])))


def _authorised(request: Request, token: str) -> bool:
    header = request.headers.get("authorization", "")
    sent = header[7:] if header[:7].lower() == "bearer " else request.cookies.get(TOKEN_COOKIE, "")
    return hmac.compare_digest(sent.encode(), token.encode())
