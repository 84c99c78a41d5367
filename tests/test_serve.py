"""`trm serve` (trm.serve): the JSON API gives what `trm solve --json` prints, the stream sends one event per
supervision step, bad requests get one-line 4xx answers and the server keeps serving, a closed client stops its
computation."""

import http.client
import json
import threading
import time

import numpy as np
import pytest

from trm.checkpoint import load_model
from trm.data import sudoku
from trm.data.format import load_dataset
from trm.serve import Models, make_server
from trm.trusted import solve_sudoku

from conftest import tiny_arc_run, tiny_maze_run, tiny_sudoku_run


@pytest.fixture(scope="module")
def run4(tmp_path_factory):
    return tiny_sudoku_run(tmp_path_factory, 4, generate=16, test=4)


HOOK = {"fn": None}  # what the server calls after every streamed event (the disconnect test holds it there)


@pytest.fixture(scope="module")
def server(run4):
    srv = make_server(Models([run4[0]]), "127.0.0.1", 0, quiet=True,
                      after_event=lambda ev: HOOK["fn"] and HOOK["fn"](ev))
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def request(server, method, path, body=None, ctype="application/json", raw=None):
    conn = http.client.HTTPConnection(*server.server_address[:2], timeout=120)
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    conn.request(method, path, body=data, headers={"Content-Type": ctype} if data is not None else {})
    res = conn.getresponse()
    text = res.read().decode()
    conn.close()
    return res.status, text


def puzzle_of(run4, i=0):
    split = load_dataset(run4[1])["test"]
    return "".join(str(int(v)) for v in sudoku.decode(split.inputs[i]))


def test_models_and_a_test_puzzle(server, run4):
    status, text = request(server, "GET", "/api/models")
    models = json.loads(text)["models"]
    assert status == 200 and [m["name"] for m in models] == ["run"]
    assert models[0]["task"] == "sudoku" and models[0]["size"] == 4 and models[0]["test_puzzles"] == 4
    status, text = request(server, "GET", "/api/puzzle?model=run&index=1")
    assert status == 200 and json.loads(text)["puzzle"].replace(".", "0") == puzzle_of(run4, 1)
    status, text = request(server, "GET", "/")
    assert status == 200 and "<script src=\"/static/app.js\">" in text


@pytest.mark.parametrize("extra", [{}, {"decode": "raw", "halt": False, "D": 3},
                                   {"K": 3, "sigma": 0.5, "select": "mode", "seed": 2},
                                   {"verify": True, "budget": 5, "K": 2, "decode": "propagate"}])
def test_solve_is_what_trm_solve_prints(server, run4, cli, extra):
    puzzle = puzzle_of(run4)
    status, text = request(server, "POST", "/api/solve", {"puzzle": puzzle, "model": "run", **extra})
    assert status == 200
    got = json.loads(text)
    flags = {"decode": {"raw": ["--raw"], "propagate": ["--propagate"]}.get(extra.get("decode"), []),
             "halt": ["--no-halt"] if extra.get("halt") is False else [],
             "verify": ["--verify", "--verify-budget", extra.get("budget")] if extra.get("verify") else []}
    argv = [a for v in flags.values() for a in v]
    for k in ("D", "K", "sigma", "select"):
        if k in extra:
            argv += [f"--{k}", extra[k]]
    if "seed" in extra:
        argv += ["--seeds", extra["seed"]]
    code, out, _ = cli("solve", "--checkpoint", run4[0], "--json", puzzle, *argv)
    want = json.loads(out)
    assert code == 0 and set(got) == set(want)
    assert {k: v for k, v in got.items() if k != "seconds"} == {k: v for k, v in want.items() if k != "seconds"}
    # and what trm.trusted's function gives
    model, _ = load_model(run4[0])
    if not extra:
        direct = solve_sudoku(model, sudoku.parse_puzzle(puzzle, 4), 4)
        assert direct["solution"] == got["solution"] and direct["steps"] == got["steps"]


def stream(server, body):
    status, text = request(server, "POST", "/api/solve/stream", body)
    return status, [json.loads(line) for line in text.splitlines() if line.strip()]


def test_stream_sends_every_step_then_the_answer(server, run4):
    puzzle = puzzle_of(run4)
    body = {"puzzle": puzzle, "model": "run", "D": 5, "halt": False}
    status, events = stream(server, body)
    assert status == 200 and [e["event"] for e in events] == ["start", "batch"] + ["step"] * 5 + ["final"]
    _, text = request(server, "POST", "/api/solve", body)
    final = events[-1]["result"]
    want = json.loads(text)
    assert {k: v for k, v in final.items() if k != "seconds"} == {k: v for k, v in want.items() if k != "seconds"}
    steps = [e for e in events if e["event"] == "step"]
    assert steps[-1]["rollouts"][0]["grid"] == final["solution"] and [s["step"] for s in steps] == [1, 2, 3, 4, 5]
    # generated puzzles have one solution: the wrong cells are those that differ from it
    truth = events[0]["truth"]
    assert truth is not None and sudoku.is_solution([int(c) for c in truth], 4)
    for s in steps:
        r = s["rollouts"][0]
        assert r["wrong"] == [i for i, (a, b) in enumerate(zip(r["grid"], truth)) if a != b]
        assert len(s["pca"]["paths"]["0"]) == s["step"]  # the path of y so far, one point per step
    blanks = [i for i, c in enumerate(puzzle) if c == "0"]
    assert steps[0]["rollouts"][0]["changed"] == blanks  # step 1 fills every blank
    # K rollouts side by side, each with its q_halt and the step where Q would halt
    status, events = stream(server, {"puzzle": puzzle, "model": "run", "K": 3, "sigma": 0.5, "D": 2})
    steps = [e for e in events if e["event"] == "step"]
    assert status == 200 and len(steps) == 2 and [r["k"] for r in steps[-1]["rollouts"]] == [0, 1, 2]
    assert all("halt_step" in r and "q_halt" in r for r in steps[-1]["rollouts"])
    assert events[-1]["result"]["K"] == 3


@pytest.mark.parametrize("method, path, body, ctype, status, words", [
    ("POST", "/api/solve", {"puzzle": "12", "model": "run"}, "application/json", 400, "bad puzzle: found 2 cells"),
    ("POST", "/api/solve", {"puzzle": "11" + "." * 14, "model": "run"}, "application/json", 400, "two 1s"),
    ("POST", "/api/solve", {"puzzle": "." * 16, "model": "nope"}, "application/json", 404, "unknown model 'nope'"),
    ("POST", "/api/solve", {"puzzle": "." * 16, "K": 1000}, "application/json", 400, "'K' must be 1..64"),
    ("POST", "/api/solve", {"puzzle": "." * 16, "K": "3"}, "application/json", 400, "must be int"),
    ("POST", "/api/solve", {"puzzle": "." * 16, "bogus": 1}, "application/json", 400, "unknown field 'bogus'"),
    ("POST", "/api/solve", {"puzzle": "." * 16, "decode": "x"}, "application/json", 400, "'decode' must be"),
    ("POST", "/api/solve", {"puzzle": "." * 16, "noise": "x"}, "application/json", 400, "'noise' must be one of"),
    ("POST", "/api/solve", {"puzzle": "." * 16, "verify": True, "budget": 0}, "application/json", 400, "budget"),
    ("POST", "/api/solve", {"puzzle": "." * 16, "D": 0}, "application/json", 400, "'D' must be"),
    ("POST", "/api/solve", None, "text/plain", 415, "application/json"),
    ("POST", "/api/solve/stream", {"puzzle": "x" * 16}, "application/json", 400, "stray character"),
    ("POST", "/api/models", {}, "application/json", 405, "no POST route"),
    ("GET", "/api/solve", None, None, 405, "takes POST"),
    ("GET", "/nope", None, None, 404, "no route"),
    ("GET", "/static/../../etc/passwd", None, None, 404, "no file"),
    ("GET", "/api/puzzle?model=run&index=99", None, None, 400, "outside the test split"),
])
def test_bad_requests_get_one_line_errors(server, method, path, body, ctype, status, words):
    raw = b"{}" if body is None and method == "POST" else None
    got, text = request(server, method, path, body, ctype=ctype or "application/json", raw=raw)
    assert got == status and text.count("\n") == 1 and words in json.loads(text)["error"]
    assert request(server, "GET", "/api/models")[0] == 200  # still serving


def test_malformed_and_oversize_bodies_are_refused(server):
    status, text = request(server, "POST", "/api/solve", raw=b"{not json")
    assert status == 400 and "not JSON" in json.loads(text)["error"]
    big = json.dumps({"puzzle": "." * (70 * 1024)}).encode()
    status, text = request(server, "POST", "/api/solve", raw=big)
    assert status == 413 and "limit is 65536" in json.loads(text)["error"]
    assert request(server, "GET", "/api/models")[0] == 200


def test_several_clients_at_once(server, run4):
    out = []
    body = {"puzzle": puzzle_of(run4), "D": 3, "halt": False}
    threads = [threading.Thread(target=lambda: out.append(stream(server, body))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(out) == 3 and all(s == 200 and ev[-1]["event"] == "final" for s, ev in out)
    assert len({json.dumps(ev[-1]["result"]["solution"]) for _, ev in out}) == 1


def test_a_closed_client_stops_its_solve(server, run4):
    """The server is held after the first step event until the client has closed its connection; it must then
    stop within a step instead of running all D = 200."""
    closed, held = threading.Event(), threading.Event()

    def hold(ev):
        if ev["event"] == "step" and not held.is_set():
            held.set()
            closed.wait(60)
    before = dict(server.app.stats)
    HOOK["fn"] = hold
    try:
        conn = http.client.HTTPConnection(*server.server_address[:2], timeout=60)
        conn.request("POST", "/api/solve/stream", body=json.dumps({"puzzle": puzzle_of(run4), "D": 200,
                                                                    "halt": False}),
                     headers={"Content-Type": "application/json"})
        res = conn.getresponse()
        assert res.status == 200 and json.loads(res.readline())["event"] == "start"
        assert held.wait(60)
        res.close()  # the response holds the socket (HTTP/1.0: the connection handed it over)
        conn.close()
        closed.set()
        for _ in range(600):  # until the server has noticed (no timing assertion: only a bound on waiting)
            if server.app.stats["streams_stopped"] > before["streams_stopped"]:
                break
            time.sleep(0.1)
    finally:
        HOOK["fn"] = None
        closed.set()
    assert server.app.stats["streams_stopped"] == before["streams_stopped"] + 1
    assert server.app.stats["steps_streamed"] - before["steps_streamed"] <= 2


def test_serve_command_refuses_bad_setups(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("trm.serve.models.default_models_dir", lambda: None)
    monkeypatch.setattr("trm.cli.serve.default_models_dir", lambda: None)
    code, _, err = cli("serve")
    assert code == 2 and "--checkpoint" in err and len(err.strip().splitlines()) == 1
    code, _, err = cli("serve", "--checkpoint", tmp_path / "none")
    assert code == 2 and "no checkpoint" in err
    (tmp_path / "empty").mkdir()
    code, _, err = cli("serve", "--checkpoint", tmp_path / "empty")
    assert code == 2 and "nor in its subfolders" in err


def test_a_folder_of_runs_and_models_dir(run4, tmp_path, monkeypatch):
    import shutil
    for name in ("a", "b"):
        shutil.copytree(run4[0], tmp_path / "models" / name)
    monkeypatch.chdir(tmp_path)
    from trm.serve import default_models_dir
    assert default_models_dir() == tmp_path / "models"
    m = Models([default_models_dir(), run4[0]])
    assert list(m.entries) == ["a", "b", "run"]
    assert np.all([d["served"] for d in m.describe()])


def test_a_maze_model_streams_its_path(run4, tmp_path_factory):
    run, data = tiny_maze_run(tmp_path_factory)
    srv = make_server(Models([run4[0], run]), "127.0.0.1", 0, quiet=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        models = {m["name"]: m for m in json.loads(request(srv, "GET", "/api/models")[1])["models"]}
        name = next(n for n, m in models.items() if m["task"] == "maze")
        question = json.loads(request(srv, "GET", f"/api/puzzle?model={name}&index=0")[1])["puzzle"]
        assert len(question.splitlines()) == 9
        body = {"puzzle": question, "model": name, "D": 3, "halt": False}
        status, events = stream(srv, body)
        assert status == 200 and [e["event"] for e in events].count("step") == 3
        final = events[-1]["result"]
        assert final == {**json.loads(request(srv, "POST", "/api/solve", body)[1]), "seconds": final["seconds"]}
        assert final["solution"].replace("o", " ") == question  # walls, S and G kept
        status, text = request(srv, "POST", "/api/solve", {"puzzle": question, "model": name, "decode": "propagate"})
        assert status == 400 and "for Sudoku" in json.loads(text)["error"]
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.fixture(scope="module")
def arc_run(tmp_path_factory):
    return tiny_arc_run(tmp_path_factory)


def test_an_arc_model_answers_two_attempts_and_their_votes(run4, arc_run, cli, tmp_path):
    run, data, task = arc_run
    srv = make_server(Models([run4[0], run]), "127.0.0.1", 0, quiet=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        models = {m["name"]: m for m in json.loads(request(srv, "GET", "/api/models")[1])["models"]}
        name = next(n for n, m in models.items() if m["task"] == "arc")
        assert models[name]["served"]
        body = {"model": name, "task": task, "augments": 3}
        status, text = request(srv, "POST", "/api/solve", body)
        got = json.loads(text)
        (tmp_path / "task.json").write_text(json.dumps(task))
        code, out, _ = cli("solve", tmp_path / "task.json", "--checkpoint", run, "--augments", "3", "--json")
        assert status == 200 and code == 0 and got == json.loads(out)  # what trm solve --json prints
        assert got["trained_versions"] and len(got["pairs"]) == 1 and "correct" in got["pairs"][0]
        status, events = stream(srv, body)
        assert status == 200 and [e["event"] for e in events] == ["start", "final"]
        assert events[0]["test_inputs"] == [task["test"][0]["input"]] and events[1]["result"] == got
        for bad, words in (({"model": name}, "give 'task'"),
                           ({"model": name, "task": {"train": 1}}, "not an ARC task"),
                           ({"model": name, "task": task, "augments": 0}, "'augments' must be"),
                           ({"model": name, "task": task, "K": 4}, "an ARC model takes"),
                           ({"model": name, "task": {**task, "test": [{"input": [[1] * 31]}]}}, "1..30 x 1..30"),
                           ({"model": "run", "task": task}, "for ARC models")):
            status, text = request(srv, "POST", "/api/solve", bad)
            err = json.loads(text).get("error", text)
            assert status == 400 and words in err and "\n" not in err, (bad, err)
        status, text = request(srv, "GET", f"/api/puzzle?model={name}&index=0")
        assert status == 404 and "task file" in json.loads(text)["error"]
    finally:
        srv.shutdown()
        srv.server_close()
