"""The page of `trm serve` in a real browser (Playwright driving Debian's chromium): a puzzle in, the steps
drawn, the final grid on the page equal to the API's answer, a bad puzzle's error shown; an ARC task file in,
its test input and the two attempts drawn as the API answers them.

Needs the python package `playwright` and a chromium binary (TRM_CHROMIUM, else /usr/bin/chromium); skipped
otherwise. TRM_SCREENSHOT=1 saves the page to docs/img/serve.png. The picture in docs/serve.md is of a trained
model: TRM_SERVE_CHECKPOINT=RUN serves that checkpoint instead of the tiny one (its dataset must be where its
config says, relative to the working directory), with test puzzle TRM_SERVE_INDEX, D = N_sup and K = 8."""

import json
import os
import shutil
import threading
from pathlib import Path

import pytest

from trm.serve import Models, make_server

from conftest import tiny_arc_run, tiny_sudoku_run

sync_api = pytest.importorskip("playwright.sync_api", reason="the python package playwright is not installed")
CHROMIUM = os.environ.get("TRM_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
if not Path(CHROMIUM).is_file():
    pytest.skip(f"no chromium binary at {CHROMIUM} (apt-get install chromium, or set TRM_CHROMIUM)",
                allow_module_level=True)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    run = os.environ.get("TRM_SERVE_CHECKPOINT") or tiny_sudoku_run(tmp_path_factory, 4, generate=16, test=4)[0]
    srv = make_server(Models([run]), "127.0.0.1", 0, quiet=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:  # one Playwright session per module: a second cannot start inside it
        try:
            b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        except Exception as e:  # a chromium that cannot start here (no display libraries, ...)
            pytest.skip(f"chromium at {CHROMIUM} does not start: {str(e).splitlines()[0]}")
        yield b
        b.close()


def new_page(browser, width=1440, height=900):
    pg = browser.new_page(viewport={"width": width, "height": height})
    pg.set_default_timeout(120_000)  # a loaded machine; nothing here is timed
    return pg


@pytest.fixture(scope="module")
def page(server, browser):
    return new_page(browser)


def test_the_page_solves_and_shows_errors(server, page, tmp_path):
    host, port = server.server_address[:2]
    page.goto(f"http://{host}:{port}/")
    page.wait_for_function("document.querySelectorAll('#model option').length > 0")
    model = json.loads(page.evaluate("fetch('/api/models').then(r => r.text())"))["models"][0]
    real = bool(os.environ.get("TRM_SERVE_CHECKPOINT"))
    D, K = (model["N_sup"], 8) if real else (4, 3)
    page.fill("#index", os.environ.get("TRM_SERVE_INDEX", "0"))
    page.click("#sample")  # a test puzzle of the model's dataset
    page.wait_for_function("document.getElementById('puzzle').value.length > 0")
    puzzle = page.input_value("#puzzle")
    page.fill("#D", str(D))
    page.click("#solve")
    page.wait_for_selector("#status[data-state=done]")
    cells = page.eval_on_selector_all("#grid .cell", "els => els.map(e => e.textContent || '0')")
    final = "".join(cells)
    # the API's answer for the same request (the page sends decode, halt and D)
    import http.client
    conn = http.client.HTTPConnection(host, port, timeout=120)
    conn.request("POST", "/api/solve", body=json.dumps({"puzzle": puzzle, "D": D, "halt": False,
                                                        "decode": "constrained"}),
                 headers={"Content-Type": "application/json"})
    want = json.loads(conn.getresponse().read())
    assert final == want["solution"]
    assert page.get_attribute("#step-label", "data-step") == str(D)  # every step drawn, the last one is D
    assert page.eval_on_selector_all("#qchart polyline", "els => els.length") == 1
    assert page.eval_on_selector_all("#pca circle", "els => els.length") == D
    # K rollouts side by side
    page.fill("#K", str(K))
    page.fill("#sigma", "0.5")
    page.click("#solve")
    page.wait_for_selector("#status[data-state=done]")
    assert page.eval_on_selector_all(".rollout", "els => els.length") == K
    shot = (Path(__file__).resolve().parents[1] / "docs/img/serve.png" if os.environ.get("TRM_SCREENSHOT") == "1"
            else tmp_path / "serve.png")
    shot.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 0
    # a bad puzzle: the server's one-line error on the page
    page.fill("#puzzle", "11" + "." * (model["size"] ** 2 - 2))
    page.click("#solve")
    page.wait_for_selector("#status[data-state=error]")
    assert "two 1s in row 1" in page.text_content("#error")


def test_the_page_shows_an_arc_tasks_attempts_and_votes(browser, tmp_path_factory, tmp_path):
    run, _, task = tiny_arc_run(tmp_path_factory)
    srv = make_server(Models([run]), "127.0.0.1", 0, quiet=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        page = new_page(browser, 1200, 800)
        host, port = srv.server_address[:2]
        page.goto(f"http://{host}:{port}/")
        page.wait_for_function("document.querySelectorAll('#model option').length > 0")
        assert page.is_visible("#arc-controls") and not page.is_visible("#grid-controls")
        path = tmp_path / "task.json"
        path.write_text(json.dumps(task))
        page.set_input_files("#task-file", str(path))  # the file picker fills the text box
        page.wait_for_function("document.getElementById('puzzle').value.length > 0")
        page.fill("#augments", "3")
        page.click("#solve")
        page.wait_for_selector("#arc-pairs[data-final='1']")
        shown = page.eval_on_selector_all(
            "#arc-pairs .arc-grid", "gs => gs.map(g => [...g.children].map(c => Number(c.dataset.v)))")
        import http.client
        conn = http.client.HTTPConnection(host, port, timeout=120)
        conn.request("POST", "/api/solve", body=json.dumps({"task": task, "augments": 3}),
                     headers={"Content-Type": "application/json"})
        want = json.loads(conn.getresponse().read())
        flat = lambda g: [v for row in g for v in row]  # noqa: E731
        attempts = want["pairs"][0]["attempts"]
        test = task["test"][0]
        assert shown == [flat(test["input"]), flat(test["output"])] + [flat(a) for a in attempts]
        assert f"{want['pairs'][0]['votes'][0]} votes" in page.text_content("#arc-pairs")
        shot = (Path(__file__).resolve().parents[1] / "docs/img/serve-arc.png"
                if os.environ.get("TRM_SCREENSHOT") == "1" else tmp_path / "arc.png")
        page.screenshot(path=str(shot), full_page=True)
        page.fill("#puzzle", "{not json")
        page.click("#solve")
        page.wait_for_selector("#status[data-state=error]")
        assert "not JSON" in page.text_content("#error")
        page.close()
    finally:
        srv.shutdown()
        srv.server_close()
