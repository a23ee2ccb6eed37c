"""The owner page: Flickr photo owners find their faces in a dataset and ask for their removal (``fdf-build serve``).

A Starlette app run by uvicorn (the ``[serve]`` extra). Routes:

* ``GET /``: the search form; ``GET /search?q=``: every face :func:`fdf_build.privacy.index.search` finds for the
  query (what ``search_username.py`` answers), each with its thumbnail, split, license, author and Flickr link.
* ``GET /image/<split>/<n>.png``: one crop; the path is matched against a pattern, never joined as given, so
  nothing outside ``DATASET/<split>/images/`` can be named.
* ``POST /requests``: appends a removal request to the queue (:mod:`fdf_build.privacy.requests`); it removes
  nothing by itself.

Every value put in a page is escaped, every input is bounded, errors show a page without a trace (the trace goes
to the log), and pages allow no script at all (Content-Security-Policy). Links are relative, so the page works
under any path prefix a reverse proxy gives it.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import logging
import os
import re
import stat
from html import escape
from pathlib import Path
from typing import Optional
from urllib.parse import parse_qs, quote, urlsplit

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request as HttpRequest
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from ..dataset.layout import dataset_splits
from ..dataset.metainfo import FaceRecord
from ..errors import BadInput, Stopped
from ..split import SPLITS
from .index import Match, index_dataset, search
from .removal import recover
from .requests import (MAX_CONTACT, MAX_QUERY, MAX_REASON, REQUESTS_FILE, BadRequest, Query, Request, append_request,
                       parse_query)

log = logging.getLogger(__name__)

MAX_BODY = 16 * 1024  # the request form's three fields at their bounds, percent-encoded, fit with room to spare
_IMAGE = re.compile(r"(0|[1-9][0-9]{0,8})\.png")

CSS = """
body{font:16px/1.5 system-ui,sans-serif;margin:0;color:#1d1d1f;background:#f6f6f4}
main{max-width:60rem;margin:0 auto;padding:1.5rem}
h1{font-size:1.6rem;margin:.2rem 0 .6rem}
form.search{display:flex;gap:.5rem;flex-wrap:wrap;margin:1rem 0}
form.search input{flex:1;min-width:16rem}
input,textarea,button{font:inherit;padding:.45rem .6rem;border:1px solid #999;border-radius:4px}
button{background:#1a5fb4;color:#fff;border-color:#1a5fb4;cursor:pointer}
label{display:block;font-weight:600;margin-top:.6rem}
.note{color:#555;font-size:.92rem}
.message{padding:.7rem 1rem;border-radius:4px;background:#fff;border-left:4px solid #1a5fb4}
.message.error{border-color:#c01c28}
ul.faces{list-style:none;padding:0;display:grid;grid-template-columns:repeat(auto-fill,minmax(12rem,1fr));gap:1rem}
ul.faces li{background:#fff;border-radius:6px;padding:.6rem;box-shadow:0 1px 2px #0002}
ul.faces img{width:100%;height:auto;aspect-ratio:1;display:block;border-radius:3px;background:#ddd}
dl{margin:.4rem 0 0;font-size:.85rem;display:grid;grid-template-columns:auto 1fr;gap:0 .5rem}
dt{color:#666}dd{margin:0;overflow-wrap:break-word;min-width:0}
form.request{background:#fff;padding:1rem;border-radius:6px;margin-top:1.5rem}
form.request input,form.request textarea{width:100%;box-sizing:border-box}
"""
_CSS_HASH = base64.b64encode(hashlib.sha256(CSS.encode()).digest()).decode()
HEADERS = {
    # no script runs on these pages, whatever a metainfo or a query holds
    "Content-Security-Policy": f"default-src 'none'; img-src 'self'; style-src 'sha256-{_CSS_HASH}'; "
                               "form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # a search URL names the owner: Flickr need not learn it
}


class OwnerPage:
    """The pages of one dataset; the queue of requests may live elsewhere (a dataset mounted read-only)."""

    def __init__(self, dataset: Path, requests_file: Optional[Path] = None, title: Optional[str] = None):
        self.dataset = Path(dataset)
        self.requests_file = Path(requests_file) if requests_file else self.dataset / REQUESTS_FILE
        self.title = title or self.dataset.resolve().name

    # ------------------------------------------------------------ routes

    def home(self, request: HttpRequest) -> Response:
        return self._page(self._intro())

    def search(self, request: HttpRequest) -> Response:
        text = request.query_params.get("q", "")
        try:
            query = parse_query(text)
        except BadRequest as e:
            return self._page(self._intro(text) + _message(str(e), error=True), status=400)
        matches = self._search(query)
        return self._page(self._intro(text) + self._results(query, matches) + self._request_form(query, matches))

    def image(self, request: HttpRequest) -> Response:
        split, name = request.path_params["split"], request.path_params["name"]
        if split not in SPLITS or not _IMAGE.fullmatch(name):
            raise HTTPException(404)
        data = _read_own_file(self.dataset, split, "images", name)
        if data is None:
            raise HTTPException(404)
        return Response(data, media_type="image/png", headers={**HEADERS, "Cache-Control": "public, max-age=300"})

    async def submit(self, request: HttpRequest) -> Response:
        if not _same_origin(request):
            raise HTTPException(403)
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind != "application/x-www-form-urlencoded":
            raise HTTPException(415)
        body = await request.body()  # the app's max_body_size bounds it
        try:
            form = parse_qs(body.decode("utf-8", errors="replace"), max_num_fields=8)
        except ValueError:
            raise HTTPException(400) from None
        field = {k: form.get(k, [""])[0] for k in ("q", "contact", "reason")}
        try:
            query = parse_query(field["q"])
        except BadRequest as e:
            return self._page(self._intro(field["q"]) + _message(str(e), error=True), status=400)
        matches = await run_in_threadpool(self._search, query)
        try:
            queued = Request.from_form(query, field["contact"], field["reason"], len(matches))
        except BadRequest as e:
            return self._page(self._intro(field["q"]) + _message(str(e), error=True)
                              + self._request_form(query, matches, field), status=400)
        await run_in_threadpool(append_request, self.requests_file, queued)
        log.info("removal request %s queued in %s (%d face(s))", queued.id, self.requests_file, len(matches))
        return self._page(self._confirmation(queued))

    # ------------------------------------------------------------ parts

    def _search(self, query: Query) -> list[Match]:
        try:
            return search(self.dataset, nsids=query.nsids, photo_ids=query.photo_ids)
        except BadInput as e:
            log.error("search failed: %s", e)
            raise HTTPException(503) from None

    def _intro(self, text: str = "") -> str:
        return f"""<h1>Are your photos in {escape(self.title)}?</h1>
<p>This dataset holds faces cut from public Flickr photos. If you took or uploaded some of them, you can find
each face here and ask for their removal.</p>
<form class="search" action="search" method="get" role="search">
<input name="q" value="{escape(text)}" maxlength="{MAX_QUERY}" required aria-label="NSID, photo id or photo address"
 placeholder="12345678@N00, a photo id or https://www.flickr.com/photos/...">
<button type="submit">Search</button></form>
<p class="note">Your Flickr NSID (like 12345678@N00), a photo id, or the address of one of your photos: its page,
the image itself or a flic.kr/p/... link.</p>"""

    def _results(self, query: Query, matches: list[Match]) -> str:
        what = escape(", ".join([*query.nsids, *map(str, query.photo_ids)]))
        if not matches:
            return _message(f"No face of {what} is in this dataset.")
        splits = ", ".join(f"{sum(m.split == s for m in matches)} in {s}" for s in dict.fromkeys(m.split for m in matches))
        cards = "".join(_card(m) for m in matches)
        return (_message(f"{len(matches)} face{'s' * (len(matches) != 1)} of {what} found ({escape(splits)}).")
                + f'<ul class="faces">{cards}</ul>')

    def _request_form(self, query: Query, matches: list[Match], field: Optional[dict] = None) -> str:
        field = field or {}
        what = ("these faces removed from the dataset and kept out of its later builds" if matches
                else "this kept out of the dataset's later builds")
        return f"""<form class="request" action="requests" method="post">
<h2>Ask for removal</h2>
<p>Ask to have {what}. The request goes to the dataset's maintainer, who may write to you to confirm that the photos
are yours; it removes nothing by itself.</p>
<input type="hidden" name="q" value="{escape(query.text)}">
<label for="contact">Your e-mail address</label>
<input id="contact" name="contact" type="email" required maxlength="{MAX_CONTACT}" value="{escape(field.get('contact', ''))}">
<label for="reason">Reason (optional)</label>
<textarea id="reason" name="reason" rows="3" maxlength="{MAX_REASON}">{escape(field.get('reason', ''))}</textarea>
<p><button type="submit">Send the request</button></p></form>"""

    def _confirmation(self, queued: Request) -> str:
        asked = escape(", ".join([*queued.query.nsids, *map(str, queued.query.photo_ids)]))
        return f"""<h1>Request received</h1>
{_message(f"Your request to remove {asked} ({queued.faces_found} face{'s' * (queued.faces_found != 1)} "
          f"in the dataset now) is queued as {escape(queued.id)}.")}
<p>It removes nothing by itself. The maintainer of {escape(self.title)} reviews the queue, may write to
{escape(queued.contact)} to confirm that the photos are yours, and then removes the faces from every split and keeps
them out of later builds.</p>
<p><a href="./">Search again</a></p>"""

    def _page(self, body: str, status: int = 200) -> Response:
        return _html(f"{escape(self.title)}: find your photos", body, status)


def _read_own_file(root: Path, *parts: str) -> Optional[bytes]:
    """The bytes of ``root/parts...`` where no part below ``root`` is a link and the last is a plain file, else
    None: a linked ``images/`` folder, or a link inside it, does not make an outside file a dataset image."""
    nofollow = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return None
    try:
        for part in parts[:-1]:
            inner = os.open(part, nofollow | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = inner
        with os.fdopen(os.open(parts[-1], nofollow, dir_fd=fd), "rb") as f:
            return f.read() if stat.S_ISREG(os.fstat(f.fileno()).st_mode) else None
    except OSError:  # missing, or a link (ELOOP, ENOTDIR)
        return None
    finally:
        os.close(fd)


def _same_origin(request: HttpRequest) -> bool:
    """Whether a POST comes from this page, not from a form on another site that a browser was made to send.

    Browsers say where a request comes from: ``Sec-Fetch-Site`` (same-origin, or none for one typed or
    bookmarked), else ``Origin``, which must name the host the request was sent to (behind a proxy: keep
    ``Host``). A client sending neither is not a browser carrying someone's visit, so it is let through.
    """
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site in ("same-origin", "none")
    origin = request.headers.get("origin")
    if origin is None:
        return True
    return origin != "null" and urlsplit(origin).netloc.lower() == request.headers.get("host", "").lower()


def _card(m: Match) -> str:
    r = FaceRecord.from_json(m.image, m.entry, split=m.split)
    src = f"image/{quote(m.split)}/{r.image}.png"
    return (f'<li><a href="{src}"><img src="{src}" width="256" height="256" loading="lazy" '
            f'alt="face {r.image} of {escape(m.split)}"></a><dl>'
            f"<dt>split</dt><dd>{escape(m.split)}, face {r.image}</dd>"
            f"<dt>license</dt><dd>{_link(r.license_url, r.license or r.license_url or '?')}</dd>"
            f"<dt>author</dt><dd>{escape(r.author or r.user_nsid or '?')}</dd>"
            f"<dt>photo</dt><dd>{_link(r.photo_url, r.photo_title or f'photo {r.photo_id}')}</dd></dl></li>")


def _link(url, text) -> str:
    """A link only to http(s): a metainfo may hold anything, javascript: URLs included."""
    text = escape(str(text))
    if isinstance(url, str) and urlsplit(url).scheme in ("http", "https"):
        return f'<a href="{escape(url)}" rel="noreferrer noopener">{text}</a>'
    return text


def _message(text: str, *, error: bool = False) -> str:
    """``text`` is HTML: callers escape what came from outside."""
    return f'<p class="message{" error" * error}" role="status">{text}</p>'


def _html(title: str, body: str, status: int = 200) -> Response:
    page = (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{title}</title>'
            f"<style>{CSS}</style></head><body><main>{body}</main></body></html>")
    return HTMLResponse(page, status_code=status, headers=HEADERS)


_ERRORS = {
    400: "That request could not be read.",
    403: "Send the form from this page itself.",
    404: "There is nothing at this address.",
    405: "That method is not allowed here.",
    413: "That is more than this page accepts.",
    415: "Send the form from the page.",
    503: "The dataset cannot be searched right now; please try again later.",
}


async def _http_error(request: HttpRequest, exc: HTTPException) -> Response:
    text = _ERRORS.get(exc.status_code, "That did not work.")
    return _html("Error", _message(f'{escape(text)} <a href="{_home(request)}">Back to the search</a>', error=True),
                 exc.status_code)


async def _server_error(request: HttpRequest, exc: Exception) -> Response:
    # the trace goes to the server's log (uvicorn logs the exception that Starlette re-raises), never to the page
    return _html("Error", _message("Something went wrong on our side; the maintainer's log has the details. "
                                   f'<a href="{_home(request)}">Back to the search</a>', error=True), 500)


def _home(request: HttpRequest) -> str:
    """The search page relative to this one, so it is right under whatever prefix a proxy serves the page."""
    return "../" * (request.url.path.count("/") - 1) or "./"


def create_app(dataset: Path, *, requests_file: Optional[Path] = None, title: Optional[str] = None) -> Starlette:
    dataset = Path(dataset)
    dataset_splits(dataset)
    recover(dataset)  # a removal a killed command left half done is finished before anyone searches
    index_dataset(dataset)  # a metainfo that does not parse is refused now, not answered with a 503 per search
    page = OwnerPage(dataset, requests_file, title)
    queue = page.requests_file
    if not os.access(queue if queue.exists() else queue.parent, os.W_OK):
        # said now, not to the first owner who sends a request
        raise Stopped(f"{queue}: cannot be written; give --requests a file in a writable folder")
    routes = [
        Route("/", page.home),
        Route("/search", page.search),
        Route("/image/{split}/{name}", page.image),
        Route("/requests", page.submit, methods=["POST"]),
        # a request sent to /requests by GET (a reload of the confirmation) goes back to the form
        Route("/requests", lambda request: RedirectResponse("./", 303), methods=["GET"]),
    ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: _http_error, Exception: _server_error},
                    max_body_size=MAX_BODY)
    app.router.redirect_slashes = False  # any path but these exact ones is a 404, never a redirect built from Host
    return app


def log_config() -> dict:
    """uvicorn's logging with the access log on stderr too (stdout stays free), each line with its time."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["handlers"]["access"]["stream"] = "ext://sys.stderr"
    config["formatters"]["access"]["fmt"] = '%(asctime)s %(client_addr)s "%(request_line)s" %(status_code)s'
    return config


def run(dataset: Path, *, host: str = "127.0.0.1", port: int = 8000, requests_file: Optional[Path] = None,
        title: Optional[str] = None) -> None:
    """Serve until interrupted, with the limits of :mod:`.httpguard`. Client addresses in the log come from
    X-Forwarded-For when the proxy's address is in FORWARDED_ALLOW_IPS (uvicorn's setting; 127.0.0.1 by default)."""
    import uvicorn

    from .httpguard import server_config

    app = create_app(dataset, requests_file=requests_file, title=title)
    uvicorn.Server(server_config(app, host=host, port=port, log_config=log_config(), access_log=True)).run()
