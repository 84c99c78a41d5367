"""Answers a person can trust (trm.trusted): constrained decoding, propagation, the verify search, and that the
raw paths are the model's own argmax, as evaluation and sampling compute it."""

import json

import numpy as np
import pytest
import torch

from trm.data import maze, sudoku
from trm.model import TRM, ModelConfig
from trm.evaluate import rollout
from trm.sampling import SamplerConfig, sample
from trm.trusted import Task, VerifyConfig, decode_answers, solve_sudoku, verify_search

from conftest import tiny_maze_run, tiny_sudoku_run

PUZZLE4 = "1...........3..2"  # several solutions: the checks, not a unique answer, are under test


@pytest.fixture(scope="module")
def tiny4():
    """A random 4x4 model whose q head varies (so halting and selection have something to do)."""
    torch.manual_seed(0)
    model = TRM(ModelConfig(vocab_size=6, seq_len=16, d=16, heads=2, mixer="mlp", pos="none", n=1, T=1, N_sup=3,
                            puzzle_emb_len=1, puzzle_emb_dim=16)).eval()
    with torch.no_grad():
        model.q_head.weight.normal_(0, 1.0)
    return model


def test_constrained_decoding_keeps_givens_and_writes_only_digits():
    task = Task("sudoku", 4)
    inputs = sudoku.encode(sudoku.parse_puzzle(PUZZLE4, 4))
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(5, 16, 6)).astype(np.float32)
    logits[:, :, :2] += 10  # the raw argmax says PAD or blank everywhere
    raw = decode_answers(logits, inputs, task, "raw")
    assert (raw <= 1).all()
    got = decode_answers(logits, inputs, task, "constrained")
    given = inputs > 1
    assert (got[:, given] == inputs[given]).all() and ((got >= 2) & (got <= 5)).all()
    # a free cell takes the best digit: PAD and blank are never chosen, the digits' order is the model's
    free = np.flatnonzero(~given)
    assert (got[:, free] == logits[:, free, 2:].argmax(-1) + 2).all()
    # a maze keeps walls, S and G; an open cell is open or path
    q = maze.encode_text("S #" + "   " + "# G")
    m = decode_answers(rng.normal(size=(3, 9, 6)).astype(np.float32), q, Task("maze", 3), "constrained")
    assert (m[:, q != maze.OPEN] == q[q != maze.OPEN]).all() and np.isin(m[:, q == maze.OPEN], [2, 5]).all()


def test_propagation_places_the_confident_cells_first_and_strikes_their_digits():
    """The model is sure of cell 1's digit and leans to the same digit in cell 2, in the same row: the constrained
    argmax repeats it; propagation places cell 1 first and cell 2 takes its next digit, the right one."""
    task = Task("sudoku", 4)
    puzzle = sudoku.parse_puzzle(PUZZLE4, 4)
    solution = sudoku.solve(puzzle, 4)[0][0]
    inputs = sudoku.encode(puzzle)
    logits = np.full((1, 16, 6), -5.0, np.float32)
    logits[0, np.arange(16), sudoku.encode(solution)] = 3.0  # the solution, fairly sure
    logits[0, 2, 1 + solution[1]] = 4.0  # cell 2 leans to cell 1's digit, wrongly ...
    logits[0, 1, 1 + solution[1]] = 9.0  # ... while cell 1 is sure of it
    assert not sudoku.is_solution(sudoku.decode(decode_answers(logits, inputs, task, "constrained")[0]), 4)
    got = sudoku.decode(decode_answers(logits, inputs, task, "propagate")[0])
    assert np.array_equal(got, solution)
    with pytest.raises(ValueError, match="Sudoku"):
        decode_answers(logits[:, :9], maze.encode_text("S #   # G"), Task("maze", 3), "propagate")


def test_raw_paths_are_the_models_own_argmax(tiny4):
    puzzle = sudoku.parse_puzzle(PUZZLE4, 4)
    x = torch.from_numpy(sudoku.encode(puzzle)[None].astype("int64"))
    for halt in (True, False):  # deterministic: the argmax where evaluation's rollout stops
        for step, _, out in rollout(tiny4, x, torch.zeros(1, dtype=torch.long), 4, dtype="fp32",
                                    stop_when_halted=halt):
            pass
        r = solve_sudoku(tiny4, puzzle, 4, how="raw", halt=halt, D=4, dtype="fp32")
        want = sudoku.decode(out.logits.argmax(-1)[0].numpy())
        assert r["solution"] == "".join(map(str, want)) and r["steps"] == step and r["cells_decoded"] == 0
        assert r["q_halt"] == pytest.approx(float(out.q_halt[0]), abs=1e-5)
        assert r["valid"] == (sudoku.is_solution(want, 4) and sudoku.keeps_givens(puzzle, want))
    # PTRM: the answer the sampler selects among the same K noisy rollouts
    cfg = SamplerConfig(K=5, sigma=0.5, D=3, select="mode")
    s = sample(tiny4, sudoku.encode(puzzle)[None], np.zeros(1, np.int64), cfg, seed=1, keep_selected=True,
               dtype="fp32")
    r = solve_sudoku(tiny4, puzzle, 4, how="raw", sampler=cfg, seed=1, dtype="fp32")
    assert r["solution"] == "".join(map(str, sudoku.decode(s.selected[0]))) and r["K"] == 5
    assert r["q_halt"] == pytest.approx(float(s.selected_q[0]), abs=1e-5)
    # the default decoding keeps the givens whatever the model says
    r = solve_sudoku(tiny4, puzzle, 4, dtype="fp32")
    assert r["keeps_givens"] and "0" not in r["solution"] and r["decode"] == "constrained"


class ScriptedTask(Task):
    """A task whose checker accepts only the answers of the (batch, rollout) pairs in `accept`."""

    def __init__(self, accept):
        super().__init__("sudoku", 4)
        self.accept, self.calls = accept, 0

    def valid(self, inputs, answers):
        ok = np.array([(self.calls, k) in self.accept for k in range(len(answers))])
        self.calls += 1
        return ok


def test_verify_search_counts_rollouts_and_calls(tiny4):
    inputs = sudoku.encode(sudoku.parse_puzzle(PUZZLE4, 4))
    per_rollout = 3 * tiny4.calls_per_step  # D steps, no early stop
    vcfg = VerifyConfig(budget=20, sampler=SamplerConfig(K=4, sigma=0.5, D=3))
    # the deterministic rollout, batch 1 (rollouts 1-4), batch 2 holds the first valid answer in its rollout 2
    v = verify_search(tiny4, ScriptedTask({(2, 2)}), inputs, vcfg, dtype="fp32")
    assert v.found and v.rollouts == 9 and v.first_valid == 1 + 4 + 2 and v.batches == 3
    assert v.calls == 9 * per_rollout and v.pick == 2
    # none valid: the budget is spent exactly (the last batch is cut to fit) and the answer is best-q of all
    v = verify_search(tiny4, ScriptedTask(set()), inputs, VerifyConfig(budget=7, sampler=vcfg.sampler), dtype="fp32")
    assert not v.found and v.rollouts == 7 and v.calls == 7 * per_rollout and v.first_valid is None
    assert len(v.batch.q) == 7 and v.pick == int(np.argmax(v.batch.q))
    # the deterministic answer first: when it passes, nothing noisy runs
    v = verify_search(tiny4, ScriptedTask({(0, 0)}), inputs, vcfg, dtype="fp32")
    assert v.found and v.rollouts == 1 and v.first_valid == 0
    for bad, words in ((dict(budget=0), "--verify-budget"),
                       (dict(sampler=SamplerConfig(K=4, sigma=0.0)), "sigma")):
        with pytest.raises(ValueError, match=words):
            verify_search(tiny4, Task("sudoku", 4), inputs, VerifyConfig(**bad))


# --- the command line ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def run4(tmp_path_factory):
    return tiny_sudoku_run(tmp_path_factory, 4, generate=16, test=4)


def test_solve_flags(cli, run4):
    run, data = run4
    code, out, _ = cli("solve", "--checkpoint", run, "--data", data, "--index", 1, "--json")
    r = json.loads(out)
    assert code == 0 and r["keeps_givens"] and "0" not in r["solution"] and r["decode"] == "constrained"
    code, out, _ = cli("solve", "--checkpoint", run, "--data", data, "--index", 1, "--json", "--raw")
    assert code == 0 and json.loads(out)["decode"] == "raw" and json.loads(out)["cells_decoded"] == 0
    code, out, _ = cli("solve", "--checkpoint", run, "--data", data, "--index", 1, "--json", "--verify",
                       "--verify-budget", 5, "--K", 2, "--sigma", 0.5, "--propagate")
    v = json.loads(out)["verify"]
    assert code == 0 and v["rollouts"] <= 5 and v["K"] == 2 and v["found"] == json.loads(out)["valid"]
    code, out, _ = cli("solve", "--checkpoint", run, "--data", data, "--index", 1, "--verify", "--verify-budget", 3)
    assert code == 0 and "rollouts" in out and "network calls" in out


@pytest.mark.parametrize("argv, words", [
    (["--verify", "--verify-budget", "0"], "--verify-budget must be >= 1"),
    (["--verify", "--trace"], "--trace"),
    (["--raw", "--propagate"], "choose one"),
])
def test_solve_refuses_bad_trust_flags(cli, run4, argv, words):
    run, data = run4
    code, _, err = cli("solve", "--checkpoint", run, "--data", data, "--index", 0, *argv)
    assert code == 2 and words in err and len(err.strip().splitlines()) == 1


def test_eval_verify_reports_the_rule_checked_selection(cli, run4):
    run, data = run4
    code, out, _ = cli("eval", "--checkpoint", run, "--data", data, "--K", 3, "--sigma", 0.5, "--D", 2,
                       "--verify", "--json")
    s = json.loads(out)["scores"][-1]
    assert code == 0 and {"verify@K", "valid@K"} <= set(s)
    # generated puzzles have one solution, so an answer the checker accepts is the label: verify = valid
    assert s["verify@K"] == pytest.approx(s["valid@K"]) and s["pass@K"] >= s["verify@K"] >= 0
    code, out, _ = cli("eval", "--checkpoint", run, "--data", data, "--K", 3, "--sigma", 0.5, "--D", 2, "--verify")
    assert code == 0 and "verify@K" in out
    code, _, err = cli("eval", "--checkpoint", run, "--data", data, "--verify")
    assert code == 2 and "sampler flags" in err


@pytest.fixture(scope="module")
def maze_run(tmp_path_factory):
    return tiny_maze_run(tmp_path_factory)


def test_solve_a_maze_keeps_walls_and_verifies(cli, maze_run):
    run, data = maze_run
    code, out, _ = cli("solve", "--checkpoint", run, "--data", data, "--index", 0, "--json")
    r = json.loads(out)
    question = maze.to_text(np.asarray(load_test(data).inputs[0]), 9)
    assert code == 0 and r["decode"] == "constrained" and isinstance(r["valid"], bool)
    # only open cells may turn into path cells
    assert all(a == q or (q == " " and a == "o") for a, q in zip(r["solution"], question))
    code, out, _ = cli("solve", "--checkpoint", run, "--data", data, "--index", 0, "--verify", "--verify-budget", 3,
                       "--sigma", 1.0, "--json")
    v = json.loads(out)["verify"]
    assert code == 0 and 1 <= v["rollouts"] <= 3 and v["found"] == json.loads(out)["valid"]
    code, out, _ = cli("solve", "--checkpoint", run, question.replace("\n", ""))
    assert code == 0 and "model's answer" in out
    code, _, err = cli("solve", "--checkpoint", run, "S" * 81)
    assert code == 2 and "bad maze" in err and len(err.strip().splitlines()) == 1
    code, _, err = cli("solve", "--checkpoint", run, "--data", data, "--propagate")
    assert code == 2 and "--propagate is for Sudoku" in err


def load_test(data):
    from trm.data.format import load_dataset
    return load_dataset(data)["test"]


class Checker(Task):
    """A 4x4 Sudoku task whose rule checker says `verdict` to every answer."""

    def __init__(self, verdict: bool):
        super().__init__("sudoku", 4)
        self.verdict = verdict

    def valid(self, inputs, answers):
        return np.full(len(answers), self.verdict)


def test_a_halt_on_an_answer_that_breaks_the_rules_runs_on(tiny4):
    import copy
    from trm.trusted import solve
    model = copy.deepcopy(tiny4)
    with torch.no_grad():  # Q says halt after every step
        model.q_head.weight.zero_()
        model.q_head.bias.copy_(torch.tensor([10.0, -10.0]))
    inputs = sudoku.encode(sudoku.parse_puzzle(PUZZLE4, 4))
    shown = []
    r = solve(model, Checker(False), inputs, D=3, dtype="fp32", on_step=lambda t, *a: shown.append(t))
    assert r["ran_past_halt"] and r["halted_at"] == 1 and r["steps"] == 3
    assert shown == [1, 2, 3]  # each step streamed once, the repeated first one not again
    # the answer after all steps is the one --no-halt gives
    assert r["solution"] == solve(model, Checker(False), inputs, D=3, dtype="fp32", halt=False)["solution"]
    for task, how in ((Checker(True), "constrained"), (Checker(False), "raw")):  # a checked halt; --raw's own
        r = solve(model, task, inputs, D=3, dtype="fp32", how=how)
        assert r["steps"] == 1 and "ran_past_halt" not in r
