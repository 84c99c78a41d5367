"""Shipped models (trm.shipped): `trm models ship` writes the weights and a card from fresh evaluations,
`trm models` lists them and `trm solve` without --checkpoint picks the one for the puzzle."""

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file

from trm.data.format import load_dataset
from trm.serve.models import puzzle_text

from conftest import tiny_sudoku_run


@pytest.fixture(scope="module")
def run4(tmp_path_factory):
    return tiny_sudoku_run(tmp_path_factory, 4, generate=16, test=4)


@pytest.fixture(scope="module")
def shipped(run4, tmp_path_factory):
    from trm.cli import main
    root = tmp_path_factory.mktemp("models")
    assert main(["models", "ship", str(run4[0]), "tiny4", "--dir", str(root), "--solve-limit", "2",
                 "--ptrm-limit", "2", "--verify-budget", "3", "--K", "2"]) == 0
    return root


def test_ship_writes_weights_config_and_a_card_from_evaluations(cli, run4, shipped):
    run, data = run4
    d = shipped / "tiny4"
    assert sorted(p.name for p in d.iterdir()) == ["README.md", "card.json", "config.json", "model.safetensors"]
    w, src = load_file(d / "model.safetensors"), load_file(run / "checkpoint" / "model.safetensors")
    assert w.keys() == src.keys() and all((w[k] == src[k]).all() for k in w)
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["command"][:4] == ["trm", "train", "--preset", "sudoku4-cpu"] and "model" in cfg  # the run's record
    card = json.loads((d / "card.json").read_text())
    code, out, _ = cli("eval", "--checkpoint", run, "--data", data, "--json", "--quiet")
    ev = json.loads(out)
    assert card["held_out"]["exact_accuracy"] == ev["exact_accuracy"] and card["held_out"]["n"] == ev["n"] == 4
    assert "from" in card["held_out"]  # the run's final evaluation: the same weights and split
    code, out, _ = cli("models", "ship", run, "limited", "--dir", shipped, "--limit", "3", "--solve-limit", "0",
                       "--ptrm-limit", "0")
    fresh = json.loads((shipped / "limited" / "card.json").read_text())["held_out"]
    assert code == 0 and fresh["n"] == 3 and "from" not in fresh
    assert "solve" not in json.loads((shipped / "limited" / "card.json").read_text())
    assert card["command"].startswith("trm train --preset sudoku4-cpu")
    # the card names the run as runs/NAME, not a path on the machine that trained it
    assert f"--out runs/{Path(run).name}" in card["command"] and card["source_run"] == f"runs/{Path(run).name}"
    assert card["solve"]["default"]["n"] == 2 and card["ptrm"]["sampler"]["K"] == 2
    readme = (d / "README.md").read_text()
    assert f"| {ev['n']} | {100 * ev['exact_accuracy']:.1f}% |" in readme and card["command"] in readme
    (d / "README.md").write_text("edited")
    code, _, _ = cli("models", "card", "tiny4", "--dir", shipped)  # the card again from card.json
    assert code == 0 and (d / "README.md").read_text() == readme
    code, _, err = cli("models", "card", "none", "--dir", shipped)
    assert code == 2 and "card.json is missing" in err


def test_models_lists_and_solve_picks_the_shipped_model(cli, run4, shipped, monkeypatch):
    code, out, _ = cli("models", "--dir", shipped)
    assert code == 0 and "tiny4" in out and "4x4 sudoku" in out
    monkeypatch.setenv("TRM_MODELS", str(shipped))
    puzzle = puzzle_text("sudoku", 4, np.asarray(load_dataset(run4[1])["test"].inputs[0]))
    code, out, _ = cli("solve", puzzle, "--json")
    code2, out2, _ = cli("solve", puzzle, "--json", "--checkpoint", run4[0])
    assert code == code2 == 0 and json.loads(out)["solution"] == json.loads(out2)["solution"]
    code, _, err = cli("solve", "." * 81)
    assert code == 2 and "no shipped model for a 9x9 Sudoku" in err and len(err.strip().splitlines()) == 1
    code, _, err = cli("solve", "12")
    assert code == 2 and "bad puzzle" in err


def test_ship_refuses_bad_requests(cli, run4, shipped, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    for argv, words in ((["ship", tmp_path / "none", "x"], "no checkpoint"),
                        (["ship", run4[0], "../x"], "plain folder name"),
                        (["ship", run4[0], "mine", "--solve-limit", "0", "--ptrm-limit", "0"], "not"),
                        (["ship", run4[0], "x", "--K", "0"], "--K")):
        code, _, err = cli("models", *argv[:1], *argv[1:], "--dir", tmp_path)
        assert code == 2 and words in err and len(err.strip().splitlines()) == 1, (argv, err)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    code, _, err = cli("models", "--dir", tmp_path / "empty")
    assert code == 2 and "no shipped models" in err


def test_the_repos_model_cards_are_generated_from_their_card_json():
    # a card is data first: README.md is render_card(card.json), and its first line names the ship command
    from trm.shipped import render_card
    folders = sorted(p.parent for p in (Path(__file__).parent.parent / "models").glob("*/card.json"))
    assert {f.name for f in folders} >= {"sudoku4", "sudoku6", "sudoku9", "maze15"}
    for f in folders:
        card = json.loads((f / "card.json").read_text())
        readme = (f / "README.md").read_text()
        assert readme == render_card(card), f"{f}/README.md differs from its card.json: run trm models card {f.name}"
        assert ("--hard " in readme.splitlines()[2]) == ("hard" in card)
