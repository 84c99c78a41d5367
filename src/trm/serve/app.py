"""The HTTP side of `trm serve`: a ThreadingHTTPServer (one thread per request), a JSON API and the page.

    GET  /                       the page (static/index.html, app.js, style.css: no build step, no network)
    GET  /api/models             {"models": [...]} (trm.serve.models.Models.describe)
    GET  /api/puzzle?model=M&index=I   {"puzzle", "index", "count"}: a test puzzle of M's dataset
    POST /api/solve              {"puzzle", "model", ...} -> what `trm solve --json` prints (trm.trusted.solve)
    POST /api/solve/stream       the same request -> JSON lines, one event per supervision step (trm.serve.stream)
    (an ARC model: {"task": {"train": [...], "test": [...]}, "model", "augments", "D"} -> two attempts per test
    pair and their votes, trm.arc_eval.solve; streamed as a start and a final event: the vote needs every version)

A refused request gets a 4xx status and {"error": "one line"}; the server goes on serving. A streamed solve
stops computing when its client goes away (checked before every event: a closed socket reads as end-of-file,
and a write to it fails).
"""

from __future__ import annotations

import json
import re
import select
import socket
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from urllib.parse import parse_qs, urlparse

from .. import arc_eval
from ..data import arc
from ..data.format import DatasetError
from ..sampling import SamplerConfig
from ..trusted import DECODE, Task, solve, truth_of, verify_config
from .models import Models, RequestError, parse_puzzle
from .stream import StepEvents

STATIC = {"index.html": "text/html; charset=utf-8", "app.js": "text/javascript; charset=utf-8",
          "style.css": "text/css; charset=utf-8"}


@dataclass
class Limits:
    body_bytes: int = 64 * 1024  # larger request bodies are refused (413) unread
    K: int = 64                  # rollouts per batch
    D: int = 256                 # supervision steps
    budget: int = 512            # rollouts one --verify request may try
    augments: int = 64           # ARC: versions voted


FIELDS = {"puzzle": str, "model": str, "K": int, "sigma": float, "D": int, "noise": str, "select": str,
          "verify": bool, "budget": int, "decode": str, "halt": bool, "seed": int, "task": dict, "augments": int}
ARC_FIELDS = {"task", "model", "augments", "D"}


class ClientGone(Exception):
    """The client of a streamed solve closed its connection."""


@dataclass
class Request:
    """A checked solve request: which model, the puzzle's tokens, and trm.trusted.solve's options."""
    entry: object
    task: Task
    inputs: object
    options: dict


class App:
    """What the handler calls; holds the models, the limits and counters the tests read."""

    def __init__(self, models: Models, limits: Limits | None = None, after_event=None):
        self.models, self.limits = models, limits or Limits()
        self.after_event = after_event  # test hook: called after every streamed event
        self.lock = threading.Lock()
        self.stats = {"solves": 0, "streams": 0, "streams_stopped": 0, "steps_streamed": 0}

    def count(self, key: str, n: int = 1) -> None:
        with self.lock:
            self.stats[key] += n

    def parse(self, body: dict) -> Request:
        if not isinstance(body, dict):
            raise RequestError(400, "the body must be a JSON object")
        for k, v in body.items():
            if k not in FIELDS:
                raise RequestError(400, f"unknown field {k!r} (fields: {', '.join(FIELDS)})")
            want = FIELDS[k]
            ok = (isinstance(v, want) and not (want is int and isinstance(v, bool))) or v is None or (
                want is float and isinstance(v, int) and not isinstance(v, bool))
            if not ok:
                raise RequestError(400, f"field {k!r} must be {want.__name__}, not {type(v).__name__}")
        entry = self.models.entry(body.get("model"))
        if entry.task == "arc":
            return self._parse_arc(entry, body)
        if body.get("task") is not None or body.get("augments") is not None:
            raise RequestError(400, f"'task' and 'augments' are for ARC models; {entry.name} solves {entry.task}")
        if body.get("puzzle") is None:
            raise RequestError(400, "give 'puzzle' (Sudoku: 81 characters, '.' or '0' blank; maze: rows of '# SG')")
        task = Task(entry.task, entry.size)
        inputs = parse_puzzle(entry.task, entry.size, body["puzzle"])
        model = self.models.load(entry)
        if len(inputs) != model.cfg.seq_len:
            raise RequestError(400, f"the puzzle has {len(inputs)} cells; model {entry.name} takes "
                                    f"{model.cfg.seq_len}")
        L = self.limits
        D = body.get("D")
        if D is not None and not 1 <= D <= L.D:
            raise RequestError(400, f"'D' must be 1..{L.D}")
        how = body.get("decode") or "constrained"
        if how not in DECODE:
            raise RequestError(400, f"'decode' must be one of {', '.join(DECODE)}")
        if how == "propagate" and task.kind != "sudoku":
            raise RequestError(400, "'decode': 'propagate' is for Sudoku")
        given = {k: body[k] for k in ("K", "sigma", "noise", "select") if body.get(k) is not None}
        D = D or model.cfg.N_sup
        sampler = verify = None
        if body.get("verify"):
            budget = body.get("budget")
            budget = 64 if budget is None else budget
            if not 1 <= budget <= L.budget:
                raise RequestError(400, f"'budget' must be 1..{L.budget}")
            verify = verify_config(budget, given, D=D)
            s = verify.sampler
        elif given:
            s = sampler = SamplerConfig(**given, D=D)
        if given or verify:
            if not 1 <= s.K <= L.K:
                raise RequestError(400, f"'K' must be 1..{L.K}")
            try:
                (verify or s).validate()
            except ValueError as e:  # trm.sampling names the CLI flags: name the fields instead
                msg = str(e).splitlines()[0]
                raise RequestError(400, re.sub(r"--([a-z-]+)", r"'\1'", msg)) from None
        return Request(entry, task, inputs, {
            "how": how, "sampler": sampler, "verify": verify, "D": D, "halt": body.get("halt", True) is not False,
            "seed": body.get("seed") or 0, "dtype": "auto"})

    def _parse_arc(self, entry, body: dict) -> Request:
        extra = sorted(k for k in body if k not in ARC_FIELDS and body[k] is not None)
        if extra:
            raise RequestError(400, f"an ARC model takes {', '.join(sorted(ARC_FIELDS))}, not {', '.join(extra)}")
        if body.get("task") is None:
            raise RequestError(400, "give 'task': an ARC task as JSON ({\"train\": [...], \"test\": [...]})")
        try:
            task = arc.parse_task("task", body["task"], where="'task'")
        except DatasetError as e:
            raise RequestError(400, str(e)) from None
        L = self.limits
        augments, D = body.get("augments"), body.get("D")
        augments = 8 if augments is None else augments
        if not 1 <= augments <= L.augments:
            raise RequestError(400, f"'augments' must be 1..{L.augments}")
        if D is not None and not 1 <= D <= L.D:
            raise RequestError(400, f"'D' must be 1..{L.D}")
        return Request(entry, None, task, {"augments": augments, "D": D})

    def solve(self, req: Request, on_batch=None, on_step=None) -> dict:
        self.count("solves")
        if req.entry.task == "arc":
            return arc_eval.solve(self.models.load(req.entry), req.inputs, req.entry.data, dtype="auto",
                                  **req.options)
        return solve(self.models.load(req.entry), req.task, req.inputs, on_batch=on_batch, on_step=on_step,
                     **req.options)


def _client_closed(sock: socket.socket) -> bool:
    """Whether the peer has closed its end: the socket is readable and a peek reads end-of-file."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""
    except (OSError, ValueError):
        return True


class Handler(BaseHTTPRequestHandler):
    server_version = "trm-serve"
    app: App  # set on the subclass make_server builds
    quiet = False

    # --- plumbing ------------------------------------------------------------------------------------------
    def log_message(self, fmt, *args) -> None:
        if not self.quiet:
            super().log_message(fmt, *args)

    def _send(self, status: int, body: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, obj) -> None:
        self._send(status, (json.dumps(obj) + "\n").encode(), "application/json")

    def _error(self, status: int, message: str) -> None:
        self._json(status, {"error": " ".join(str(message).split())})  # one line, always

    def _body(self) -> dict:
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            raise RequestError(411, "the request needs a Content-Length")
        n, limit = int(length), self.app.limits.body_bytes
        if n > limit:
            if n <= 16 * limit:  # read it away, so the client sees the answer rather than a reset connection
                self.rfile.read(n)
            else:
                self.close_connection = True
            raise RequestError(413, f"the body is {n} bytes; the limit is {limit}")
        raw = self.rfile.read(n)
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise RequestError(415, f"send the request as application/json, not {ctype or 'no content type'}")
        try:
            return json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise RequestError(400, f"the body is not JSON ({getattr(e, 'msg', 'not UTF-8')})") from None

    def _guard(self, fn) -> None:
        try:
            fn()
        except RequestError as e:
            self._error(e.status, str(e))
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception as e:  # a bug: still one line to the client, the trace in the server's log
            self.log_error("error: %s: %s", type(e).__name__, e)
            self._error(500, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")

    # --- routes --------------------------------------------------------------------------------------------
    def do_GET(self) -> None:
        self._guard(self._get)

    def do_POST(self) -> None:
        self._guard(self._post)

    def _get(self) -> None:
        url = urlparse(self.path)
        path = url.path
        if path in ("/", "/index.html"):
            path = "/static/index.html"
        if path.startswith("/static/"):
            name = path[len("/static/"):]
            if name not in STATIC:
                raise RequestError(404, f"no file {path}")
            return self._send(200, resources.files(__package__).joinpath("static", name).read_bytes(),
                              STATIC[name])
        if path == "/api/models":
            return self._json(200, {"models": self.app.models.describe()})
        if path == "/api/puzzle":
            q = parse_qs(url.query)
            entry = self.app.models.entry(q.get("model", [None])[0])
            try:
                index = int(q.get("index", ["0"])[0])
            except ValueError:
                raise RequestError(400, "'index' must be an integer") from None
            return self._json(200, {"puzzle": self.app.models.test_puzzle(entry, index), "index": index})
        if path in ("/api/solve", "/api/solve/stream"):
            raise RequestError(405, f"{path} takes POST")
        raise RequestError(404, f"no route {path}")

    def _post(self) -> None:
        path = urlparse(self.path).path
        if path not in ("/api/solve", "/api/solve/stream"):
            raise RequestError(405 if path in ("/api/models", "/api/puzzle") else 404, f"no POST route {path}")
        req = self.app.parse(self._body())
        if path == "/api/solve":
            return self._json(200, self.app.solve(req))
        self._stream(req)

    def _stream(self, req: Request) -> None:
        """JSON lines, flushed one by one; the response ends with the connection (HTTP/1.0, no length)."""
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.close_connection = True
        app = self.app
        app.count("streams")

        def send(event: dict) -> None:
            if _client_closed(self.connection):
                raise ClientGone
            try:
                self.wfile.write((json.dumps(event) + "\n").encode())
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError, OSError):
                raise ClientGone from None
            if event["event"] == "step":
                app.count("steps_streamed")
            if app.after_event is not None:
                app.after_event(event)

        try:
            if req.entry.task == "arc":  # no steps to show: the answer is the vote over every version
                send({"event": "start", "task": "arc", "test_inputs": [x.astype(int).tolist()
                                                                     for x, _ in req.inputs.test]})
                send({"event": "final", "result": app.solve(req)})
                return
            events = StepEvents(req.task, req.inputs, truth_of(req.task, req.inputs), send)
            events.start()
            events.final(app.solve(req, on_batch=events.on_batch, on_step=events.on_step))
        except ClientGone:
            app.count("streams_stopped")
            self.log_message("client left; solve stopped")
        except RequestError as e:
            send({"event": "error", "error": str(e)})
        except Exception as e:  # a bug after the headers went out: one line as the last event
            self.log_error("error: %s: %s", type(e).__name__, e)
            try:
                send({"event": "error", "error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"})
            except ClientGone:
                pass


def make_server(models: Models, host: str = "127.0.0.1", port: int = 0, *, limits: Limits | None = None,
                quiet: bool = False, after_event=None) -> ThreadingHTTPServer:
    """A server bound to (host, port) (port 0: a free one; server.server_address has it). serve_forever() runs it;
    each request gets its own thread, so several pages solve at once."""
    app = App(models, limits, after_event)
    handler = type("BoundHandler", (Handler,), {"app": app, "quiet": quiet})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    server.app = app
    return server
