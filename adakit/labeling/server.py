"""`adakit label`: a local web page to answer a run's open queries (stdlib `http.server`, no dependency).

- Every request carries the run's token (``?token=`` on the page URL, ``X-Adakit-Token`` header on API
  calls): other local processes and web pages cannot read the images or write labels, also when the
  server is bound beyond loopback. The token is stored in the ledger, so a restarted server keeps its URL.
- Each answer is validated, then written in its own ledger transaction (synchronous=FULL) before the
  response is sent: an acknowledged answer survives a killed server.
- Two tabs: the ledger decides (compare-and-set); a conflicting answer gets 409 with the current label.
- Images: ``/api/image?id=SAMPLE_ID`` maps a queried sample id to the file its domain describes (or a PNG
  drawn from the pixels of an in-memory image), and
  ``/api/image?id=SAMPLE_ID&d=source|pool`` a labelled neighbour shown for a feature row to its image;
  no path is ever taken from the URL; anything else is 404.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import threading
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, urlsplit

from adakit.errors import DataError, LedgerBusy, LedgerError, NotQueried
from adakit.labeling.page import PAGE
from adakit.labeling.run import LabelingRun, file_data
from adakit.rundir import sh

MAX_BODY = 64 * 1024
#: an oversized body up to this size is read and discarded before the 413 answer, so the client gets the answer
#: instead of a broken pipe; a larger one is refused at once and the connection closed
MAX_DRAIN = 4 * 1024 * 1024
#: seconds a connection may stay silent (an idle or half-sent request) before the server closes it
REQUEST_TIMEOUT = 30.0
LOOPBACK = {"127.0.0.1", "::1", "localhost"}


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the page on this machine: ``localhost``, 127.0.0.0/8, ::1 (also
    IPv4-mapped). Any other name or address (0.0.0.0, a LAN address, a host name) is not."""
    host = host.strip().strip("[]")
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        addr = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(addr, "ipv4_mapped", None)
    return addr.is_loopback or (mapped is not None and mapped.is_loopback)


class LabelServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], run: LabelingRun, token: str, annotator: str = "web",
                 verbose: bool = False, request_timeout: float = REQUEST_TIMEOUT):
        self.run, self.token, self.annotator, self.verbose = run, token, annotator, verbose
        self.request_timeout = request_timeout
        if ":" in address[0]:
            import socket

            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{port}/?token={quote(self.token)}"

    def state(self) -> dict:
        run = self.run
        items = run.items()
        labels = run.current_labels()
        tok = quote(self.token)
        near = run.neighbours(items)
        out = [{"sample_id": i.sample_id, "round": i.round, "rank": i.rank, "score": i.score, "locator": i.locator,
                "image": f"/api/image?id={quote(i.sample_id, safe='')}&token={tok}" if i.has_image else None,
                "suggestions": [{"label": c, "p": p} for c, p in i.suggestions],
                "neighbours": [{"domain": n.domain, "sample_id": n.sample_id, "label": n.label,
                                "name": run.label_name(n.label), "similarity": n.similarity,
                                "image": (f"/api/image?id={quote(n.sample_id, safe='')}&d={n.domain}&token={tok}"
                                          if n.image is not None else None)}
                               for n in near.get(i.sample_id, [])],
                "label": labels.get(i.sample_id)} for i in items]
        done = sum(o["label"] is not None for o in out)
        return {"run": f"{run.cfg.name} · {run.run_dir.name}", "classes": run.classes, "items": out,
                "done": done, "total": len(out),
                "resume": f"adakit resume {sh(run.run_dir.resolve())}"}  # (what to run once all are answered)


class _Handler(BaseHTTPRequestHandler):
    server: LabelServer
    server_version = "adakit-label"
    sys_version = ""

    def setup(self) -> None:
        self.timeout = self.server.request_timeout  # a silent connection is closed, its thread freed
        super().setup()

    def log_message(self, fmt, *args) -> None:  # quiet unless asked
        if self.server.verbose:
            super().log_message(fmt, *args)

    # -- helpers ----------------------------------------------------------------------------------
    def _send(self, code: int, body: bytes, ctype: str, extra: dict | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, code: int, obj) -> None:
        self._send(code, json.dumps(obj).encode(), "application/json; charset=utf-8")

    def _discard(self, n: int) -> None:
        """Read and drop a refused body of ``n`` bytes (up to MAX_DRAIN; beyond it, close the connection)."""
        self.close_connection = True
        if n > MAX_DRAIN:
            return
        while n > 0:
            chunk = self.rfile.read(min(n, 65536))
            if not chunk:
                return
            n -= len(chunk)

    def _not_found(self) -> None:
        self._json(404, {"error": "not found"})

    def _authorised(self, query: dict) -> bool:
        given = self.headers.get("X-Adakit-Token") or (query.get("token") or [""])[0]
        if hmac.compare_digest(given.encode(), self.server.token.encode()):
            return True
        self._json(403, {"error": "missing or wrong token: open the URL `adakit label` printed (it carries ?token=)"})
        return False

    # -- GET --------------------------------------------------------------------------------------
    def do_GET(self) -> None:  # noqa: N802
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        if url.path == "/":
            if self._authorised(query):
                self._send(200, PAGE.encode(), "text/html; charset=utf-8",
                           {"Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                                                       "style-src 'unsafe-inline'; script-src 'unsafe-inline'"})
        elif url.path == "/api/state":
            if self._authorised(query):
                self._json(200, self.server.state())
        elif url.path == "/api/image":
            if not self._authorised(query):
                return
            ids, doms = query.get("id") or [], query.get("d") or []
            if len(ids) != 1 or len(doms) > 1:
                return self._not_found()
            if doms:
                path = self.server.run.neighbour_file(doms[0], ids[0])
                found = file_data(path) if path is not None else None
            else:
                found = self.server.run.image_data(ids[0])
            return self._send(200, *found) if found is not None else self._not_found()
        else:
            self._not_found()

    do_HEAD = do_GET

    # -- POST -------------------------------------------------------------------------------------
    def do_POST(self) -> None:  # noqa: N802
        url = urlsplit(self.path)
        if url.path != "/api/answer":
            return self._not_found()
        if not self._authorised(parse_qs(url.query)):
            return
        if not (self.headers.get("Content-Type") or "").startswith("application/json"):
            return self._json(415, {"error": "send the answer as application/json"})
        try:
            n = int(self.headers.get("Content-Length") or "0")
        except ValueError:
            n = -1
        if n > MAX_BODY:
            self._discard(n)
            return self._json(413, {"error": f"body of {n} bytes: an answer is at most {MAX_BODY} bytes of JSON "
                                             '({"sample_id": ..., "label": ...}); send one answer per request'})
        if not 0 < n <= MAX_BODY:
            return self._json(400, {"error": f"body must be 1..{MAX_BODY} bytes of JSON"})
        data = self.rfile.read(n)
        if len(data) < n:
            return self._json(400, {"error": f"body shorter than its Content-Length ({len(data)} of {n} bytes)"})
        try:
            body = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            return self._json(400, {"error": "body is not valid JSON"})
        except RecursionError:
            return self._json(400, {"error": "body is JSON nested too deeply"})
        if not isinstance(body, dict) or not isinstance(body.get("sample_id"), str) or "label" not in body:
            return self._json(400, {"error": 'expected {"sample_id": str, "label": class index or name (-1: '
                                             'nobody can label it), "replaces": null or the label being '
                                             'corrected}'})
        try:
            body["sample_id"].encode("utf-8")
        except UnicodeEncodeError:
            return self._json(400, {"error": "sample_id is not valid Unicode text"})
        run = self.server.run
        try:
            outcome, current = run.answer(body["sample_id"], body["label"], body.get("replaces"),
                                          annotator=self.server.annotator)
        except DataError as e:
            return self._json(400, {"error": str(e)})
        except NotQueried as e:
            return self._json(404, {"error": str(e)})
        except LedgerBusy as e:  # locked by another writer, or the server is stopping: nothing written, retry
            return self._json(503, {"error": str(e)})
        except LedgerError as e:
            return self._json(500, {"error": str(e)})
        if outcome == "conflict":
            what = "conflict: already labelled" if current is not None else \
                "conflict: the label being replaced is not the current one (the sample has no label now)"
            return self._json(409, {"error": what, "current": current,
                                    "current_name": None if current is None else run.label_name(current)})
        done, total = run.progress()
        self._json(200, {"outcome": outcome, "label": current, "done": done, "total": total})


class ExposedServerWarning(UserWarning):
    """The labelling page listens beyond this machine (``host`` is not a loopback address)."""


def warn_if_exposed(host: str, stacklevel: int = 2) -> None:
    """An `ExposedServerWarning` when ``host`` is not a loopback address."""
    if not is_loopback(host):
        warnings.warn(f"listening on {host}: other machines can reach this page. Anyone with the URL (it holds the "
                      "token) can label; traffic is not encrypted.", ExposedServerWarning, stacklevel=stacklevel)


def make_server(run: LabelingRun, host: str = "127.0.0.1", port: int = 8765, annotator: str = "web",
                new_token: bool = False, verbose: bool = False) -> LabelServer:
    """A server for ``run`` (not yet serving: call ``serve_forever``, or `serve_in_thread` in a notebook). Port 0
    picks a free port. A ``host`` other than this machine's loopback gives an `ExposedServerWarning`."""
    warn_if_exposed(host, stacklevel=3)
    run.items()  # load suggestions before the first request
    return LabelServer((host, port), run, run.token(renew=new_token), annotator=annotator, verbose=verbose)


def serve_in_thread(server: LabelServer) -> threading.Thread:
    t = threading.Thread(target=server.serve_forever, name="adakit-label", daemon=True)
    t.start()
    return t
