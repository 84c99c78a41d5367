"""What the dataset builders and the loader refuse, on tiny files made here: Sudoku and maze CSV rows whose
answers break the task's rules, malformed CSVs, ARC grids a cast would bend, splits that would come out empty,
destinations that are not datasets, arrays outside the ranges meta.json declares; and the dataset fingerprint
and the dataset/model compatibility check."""

import json

import numpy as np
import pytest

from trm.cli import main
from trm.data import arc, maze
from trm.data.format import (DatasetError, check_compatible, dataset_fingerprint, load_dataset, read_csv_rows,
                             write_dataset)
from trm.data.sudoku import build_sudoku, generate_minimal, read_csv, solve
from trm.model.trm import ModelConfig

HEADER = "source,question,answer,rating\n"


def one_line_error(argv, capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


# --- Sudoku CSVs ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def puzzles():
    """Four 9x9 minimal puzzles and their solutions, as CSV text fields."""
    rng = np.random.default_rng(0)
    out = []
    for _ in range(4):
        q, a = generate_minimal(9, rng)
        out.append(("".join(map(str, q)).replace("0", "."), "".join(map(str, a))))
    return out


def sudoku_csv(tmp_path, puzzles, last_row: str, name="p.csv"):
    path = tmp_path / name
    path.write_text(HEADER + "".join(f"x,{q},{a},1\n" for q, a in puzzles) + last_row)
    return path


def _given_and_blank(q):
    given = next(i for i, ch in enumerate(q) if ch != ".")
    blanks = [i for i, ch in enumerate(q) if ch == "."]
    return given, blanks


def _set(text, i, ch):
    return text[:i] + ch + text[i + 1:]


def test_sudoku_csv_answers_are_checked_against_the_rules(tmp_path, puzzles):
    q, a = puzzles[0]
    given, blanks = _given_and_blank(q)
    changed = _set(a, given, str(int(a[given]) % 9 + 1))
    row, col = given // 9 + 1, given % 9 + 1
    path = sudoku_csv(tmp_path, puzzles, f"x,{q},{changed},1\n")
    with pytest.raises(DatasetError, match=rf"p.csv line 6: the answer changes given cell r{row}c{col} "
                                           rf"\({a[given]} -> {changed[given]}\)"):
        read_csv(path)
    path = sudoku_csv(tmp_path, puzzles, f"x,{q},{_set(a, blanks[0], '.')},1\n")
    with pytest.raises(DatasetError, match="p.csv line 6: the answer leaves 1 cell blank"):
        read_csv(path)
    # two blank cells of one row swapped: every given kept, every cell filled, two equal digits in a column
    i, j = next((i, j) for i in blanks for j in blanks if i < j and i // 9 == j // 9 and a[i] != a[j])
    swapped = _set(_set(a, i, a[j]), j, a[i])
    path = sudoku_csv(tmp_path, puzzles, f"x,{q},{swapped},1\n")
    with pytest.raises(DatasetError, match=r"p.csv line 6: the answer is not a solved grid: two \ds in column"):
        read_csv(path)
    assert len(read_csv(sudoku_csv(tmp_path, puzzles, ""))[0]) == 4  # the good rows alone are read


@pytest.mark.parametrize("last_row, message", [
    (None, "no rows after the header"),
    ('x,"' + "1" * 200_000 + '",1,1\n', "line 6: not a valid CSV row: a field longer than"),
    ("x,{q80},{a},1\n", "line 6: the question: found 80 cells, expected 81"),
    ("x,{q},{a}1,1\n", "line 6: the answer: found 82 cells"),
    ("x,{q},x{a80},1\n", "line 6: the answer: stray character 'x'"),
    ("x,{q},{a},inf\n", "line 6: the rating 'inf' must be a whole number"),
    ("x,{q},{a},1.5\n", "line 6: the rating '1.5' must be a whole number"),
    ("x,{q},{a}\n", "line 6: expected 4 fields"),
])
def test_malformed_sudoku_csvs_are_refused_with_file_and_line(tmp_path, puzzles, last_row, message):
    q, a = puzzles[0]
    if last_row is None:
        path = tmp_path / "p.csv"
        path.write_text(HEADER)
    else:
        path = sudoku_csv(tmp_path, puzzles, last_row.format(q=q, a=a, q80=q[:80], a80=a[1:]))
    with pytest.raises(DatasetError, match=message):
        read_csv(path)


def test_sudoku_csv_errors_reach_the_user_as_one_line(tmp_path, puzzles, capsys):
    q, a = puzzles[0]
    cases = {"header-only": HEADER, "overflow": HEADER + f"x,{q},{a},1e400\n"}
    for name, text in cases.items():
        (tmp_path / f"{name}.csv").write_text(text)
        err = one_line_error(["data", "sudoku", "--out", str(tmp_path / name), "--csv",
                              str(tmp_path / f"{name}.csv"), "--quiet"], capsys)
        assert f"{name}.csv" in err and "Error" not in err, err
    (tmp_path / "binary.csv").write_bytes(b"\x89PNG\r\n\x1a\n\x00")
    err = one_line_error(["data", "sudoku", "--out", str(tmp_path / "b"), "--csv", str(tmp_path / "binary.csv"),
                          "--quiet"], capsys)
    assert "binary.csv: not a UTF-8 text file" in err


def test_a_question_with_two_answers_is_refused(tmp_path):
    q = np.zeros(16, np.int8)
    q[0] = 1
    sols, _ = solve(q, 4, limit=2)
    text = "".join(map(str, q)).replace("0", ".")
    answers = ["".join(map(str, s)) for s in sols]
    path = tmp_path / "two.csv"
    path.write_text(HEADER + f"x,{text},{answers[0]},0\nx,{text},{answers[1]},0\n")
    with pytest.raises(DatasetError, match="two.csv line 3: the question of a puzzle of .*two.csv with another"):
        build_sudoku(tmp_path / "ds", size=4, csvs=[path], test=1, progress=False)


def test_list_puzzles_of_the_wrong_size_or_characters_are_refused_with_their_line(tmp_path, puzzles):
    path = tmp_path / "four.txt"
    path.write_text("1234341221434321\n")
    with pytest.raises(DatasetError, match=r"four.txt line 1: expected a puzzle of 81 characters \(a 9x9"):
        build_sudoku(tmp_path / "ds", lists=[path], test=1, progress=False)
    path.write_text(puzzles[0][0] + "\n" + puzzles[1][0].replace(".", "_", 1) + "\n")
    with pytest.raises(DatasetError, match="four.txt line 2: unexpected character '_'"):
        build_sudoku(tmp_path / "ds", lists=[path], test=1, progress=False)


def test_sudoku_splits_are_never_empty_unless_asked(tmp_path, puzzles):
    path = tmp_path / "five.txt"
    path.write_text("\n".join(q for q, _ in puzzles) + "\n")
    with pytest.raises(ValueError, match="--test 10 does not fit the 4 distinct puzzles given: the test split "
                                         "takes 1 to 3"):
        build_sudoku(tmp_path / "a", lists=[path], test=10, progress=False)
    with pytest.raises(ValueError, match="--test-fraction"):
        build_sudoku(tmp_path / "b", lists=[path], test_fraction=float("inf"), progress=False)
    ds = load_dataset(build_sudoku(tmp_path / "c", lists=[path], test=4, train=0, progress=False))  # asked for
    assert len(ds["test"]) == 4 and len(ds["train"]) == 0


# --- maze CSVs --------------------------------------------------------------------------------------------
OPEN3 = "S G      "  # 3x3, all open: the shortest S-G path has one cell between S and G


@pytest.mark.parametrize("question, answer, message", [
    (OPEN3, "S Gooo   ", "3 cells are marked 'o', a shortest S-G path has 1 between S and G"),
    (OPEN3, OPEN3, "no path is marked"),
    (OPEN3, "S G    o ", "the cells marked 'o' do not join S to G"),
    ("S#G#     ", "S#G#     ", "S and G are not connected"),
    ("S        ", "S        ", "a maze needs exactly one S and one G, the question has no G"),
    ("SGG      ", "SGG      ", "the question has 2 Gs"),
])
def test_maze_csv_answers_must_mark_a_shortest_path(tmp_path, question, answer, message):
    path = tmp_path / "m.csv"
    path.write_text(HEADER + f"x,{OPEN3},SoG      ,0\nx,{question},{answer},0\n")
    with pytest.raises(DatasetError, match=f"m.csv line 3: .*{message}"):
        maze.read_csv(path)


def test_maze_csv_sizes_and_ratings_are_refused_with_their_line(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text(HEADER + f"x,{OPEN3},SoG      ,0\nx,SG  ,SG  ,0\n")
    with pytest.raises(DatasetError, match="m.csv line 3: a 2x2 maze, line 2 is 3x3"):
        maze.read_csv(path)
    path.write_text(HEADER + f"x,{OPEN3},SoG      ,inf\n")
    with pytest.raises(DatasetError, match="m.csv line 2: the rating 'inf'"):
        maze.read_csv(path)


@pytest.fixture(scope="module")
def maze_csv(tmp_path_factory):
    g = maze.generate_mazes(6, size=6, min_path=8, seed=0, batch=256, progress=False)
    path = tmp_path_factory.mktemp("mazes") / "six.csv"
    maze.write_csv(path, g["inputs"], g["labels"], g["path_length"])
    return path


def test_maze_splits_are_never_silently_empty(tmp_path, maze_csv):
    with pytest.raises(DatasetError, match="--test 6 leaves no maze for training: the CSVs hold 6 distinct mazes "
                                           r"\(give --test 5 or less"):
        maze.build_maze(tmp_path / "a", csvs=[maze_csv], test=6, progress=False)
    with pytest.raises(DatasetError, match="every maze of the --csv files is also in the --test-csv files"):
        maze.build_maze(tmp_path / "b", csvs=[maze_csv], test_csvs=[maze_csv], progress=False)
    ds = load_dataset(maze.build_maze(tmp_path / "c", csvs=[maze_csv], test=5, progress=False))
    assert (len(ds["train"]), len(ds["test"])) == (1, 5)
    ds = load_dataset(maze.build_maze(tmp_path / "d", test_csvs=[maze_csv], progress=False))  # evaluation only
    assert (len(ds["train"]), len(ds["test"])) == (0, 6)
    # 2x2 grids: a dozen distinct mazes, so 200 training mazes leave no new one to test on
    with pytest.raises(DatasetError, match="all 5 test mazes generated repeat training mazes"):
        maze.build_maze(tmp_path / "e", size=2, min_path=1, train=200, test=5, progress=False)


# --- ARC JSON ---------------------------------------------------------------------------------------------
def arc_task(path, grid=((1, 2), (3, 4))):
    path.write_text(json.dumps({"train": [{"input": grid, "output": [[1]]}],
                                "test": [{"input": [[2, 1]], "output": [[1]]}]}))
    return path


@pytest.mark.parametrize("grid, message", [
    ([[1, 1.7], [3, 4]], "colour 1.7 at row 0, column 1"),
    ([[1, 2], [3, 70000]], "colour 70000 at row 1, column 1"),
    ([[1, True]], "colour true at row 0, column 1"),
    ([[1, "3"]], 'colour "3" at row 0, column 1'),
    ([[1, -1]], "colour -1 at row 0, column 1"),
    ([[1, 2], [3]], "must be rectangular, got rows of 1 and 2 colours"),
    ([[1]] * 31, "must be 1..30 x 1..30, got 31 x 1"),
    ([], "must be 1..30 x 1..30, got 0 x 0"),
])
def test_arc_colours_and_shapes_are_refused_not_bent(tmp_path, grid, message, capsys):
    task = arc_task(tmp_path / "t.json", grid)
    with pytest.raises(DatasetError, match=f"t.json train pair 0 input: .*{message}"):
        arc.load_task_file(task)
    err = one_line_error(["data", "arc", "--out", str(tmp_path / "x"), "--task", str(task), "--quiet"], capsys)
    assert "t.json train pair 0 input" in err and message in err, err


def test_arc_task_files_of_one_name_are_refused(tmp_path):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    one, two = arc_task(tmp_path / "a" / "task.json"), arc_task(tmp_path / "b" / "task.json", [[5]])
    with pytest.raises(DatasetError, match=f"--task {two}: its task id 'task' .* also the id of a task in "
                                           f"--task {one}: rename one"):
        arc.build_arc(tmp_path / "ds", test_task_files=[one, two], augments=1, progress=False)


def test_arc_collections_with_one_id_for_two_tasks_are_refused(tmp_path):
    for name, grid in (("one", [[1]]), ("two", [[2]])):
        task = {"train": [{"input": grid, "output": [[1]]}], "test": [{"input": [[1]]}]}
        (tmp_path / f"arc-agi_{name}_challenges.json").write_text(json.dumps({"t1": task}))
    with pytest.raises(DatasetError, match="test task t1 differs between collection one and collection two"):
        arc.build_arc(tmp_path / "ds", root=tmp_path, test_collections=("one", "two"), augments=1, progress=False)


# --- destinations -----------------------------------------------------------------------------------------
def test_destinations_that_are_not_datasets_are_refused(tmp_path, capsys):
    (tmp_path / "file").write_text("mine")
    err = one_line_error(["data", "sudoku", "--out", str(tmp_path / "file" / "ds"), "--generate", "4",
                          "--size", "4", "--test", "1", "--quiet"], capsys)
    assert f"{tmp_path / 'file'} is a file, not a folder" in err
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "keep.txt").write_text("mine")
    for task in (["sudoku", "--generate", "4", "--size", "4", "--test", "1"],
                 ["maze", "--size", "5", "--min-path", "4"], ["arc", "--task", str(arc_task(tmp_path / "t.json"))]):
        err = one_line_error(["data", task[0], "--out", str(notes), "--overwrite", "--quiet", *task[1:]], capsys)
        assert "not a trm dataset" in err, err
    assert (notes / "keep.txt").read_text() == "mine"
    err = one_line_error(["data", "maze", "--out", str(tmp_path / "file"), "--overwrite", "--quiet"], capsys)
    assert "is a file, not a dataset" in err
    err = one_line_error(["data", "maze", "--out", str(tmp_path / "m"), "--seed", "-1", "--quiet"], capsys)
    assert "--seed must be >= 0" in err


# --- loading: values within meta.json's ranges; fitting a model; the fingerprint ---------------------------
def tiny_dataset(path, inputs, puzzle_ids=(0, 0), vocab=4, ids=1, labels=None):
    inputs = np.asarray(inputs, dtype=np.uint8)
    meta = {"task": "toy", "size": 2, "seq_len": inputs.shape[1], "vocab_size": vocab, "num_puzzle_ids": ids}
    split = {"inputs": inputs, "labels": inputs if labels is None else labels,
             "puzzle_ids": np.asarray(puzzle_ids, dtype=np.int32)}
    return write_dataset(path, meta, {"train": split, "test": split})


def test_tokens_and_puzzle_ids_outside_meta_are_refused_at_load(tmp_path):
    ok = load_dataset(tiny_dataset(tmp_path / "ok", [[1, 2, 3, 3], [0, 1, 2, 3]]))
    assert len(ok["train"]) == 2
    bad = load_dataset(tiny_dataset(tmp_path / "token", [[1, 2, 3, 4], [0, 1, 2, 3]]))
    with pytest.raises(DatasetError, match=r"token/train/inputs.npy holds the value 4, outside 0..3 \(meta.json: "
                                           "vocab_size 4\\)"):
        bad["train"]
    bad = load_dataset(tiny_dataset(tmp_path / "ids", [[1, 2, 3, 3], [0, 1, 2, 3]], puzzle_ids=(0, 1)))
    with pytest.raises(DatasetError, match="ids/test/puzzle_ids.npy holds the value 1, outside 0..0"):
        bad["test"]
    bad = load_dataset(tiny_dataset(tmp_path / "neg", [[1, 2, 3, 3], [0, 1, 2, 3]], puzzle_ids=(0, -1)))
    with pytest.raises(DatasetError, match="neg/train/puzzle_ids.npy holds the value -1"):
        bad["train"]
    path = tiny_dataset(tmp_path / "shape", [[1, 2, 3, 3], [0, 1, 2, 3]])
    np.save(path / "train" / "labels.npy", np.zeros((2, 3), np.uint8))
    with pytest.raises(DatasetError, match=r"shape/train/labels.npy has shape \(2, 3\), expected \(N, 4\)"):
        load_dataset(path)
    meta = json.loads((path / "meta.json").read_text())
    (path / "meta.json").write_text(json.dumps({**meta, "vocab_size": "11"}))
    with pytest.raises(DatasetError, match="'vocab_size' must be a whole number >= 1, not '11'"):
        load_dataset(path)


def test_check_compatible_names_what_does_not_fit():
    meta = {"task": "sudoku", "size": 9, "seq_len": 81, "vocab_size": 11, "num_puzzle_ids": 1}
    check_compatible(meta, ModelConfig(vocab_size=11, seq_len=81))
    with pytest.raises(DatasetError, match=r"data/s6 \(sudoku 9x9\) does not fit the model: seq_len 81 \(model: 36\), "
                                           r"vocab_size 11 \(model: 8\)"):
        check_compatible(meta, ModelConfig(vocab_size=8, seq_len=36), name="data/s6")
    arc_meta = {"task": "arc", "size": 30, "seq_len": 900, "vocab_size": 12, "num_puzzle_ids": 5000}
    with pytest.raises(DatasetError, match=r"num_puzzle_ids 5000 \(model's table: 4000 rows\)"):
        check_compatible(arc_meta, ModelConfig(vocab_size=12, seq_len=900, num_puzzle_ids=4000))
    check_compatible(arc_meta, ModelConfig(vocab_size=12, seq_len=900, num_puzzle_ids=6000))
    check_compatible(arc_meta, ModelConfig(vocab_size=12, seq_len=900, puzzle_emb_dim=0))  # no table: any ids


def test_dataset_fingerprint_follows_the_content_not_the_path(tmp_path):
    build = lambda out, **kw: build_sudoku(out, size=4, generate=12, test=3, seed=kw.get("seed", 0),  # noqa: E731
                                           workers=1, progress=False)
    a, b, c = build(tmp_path / "a"), build(tmp_path / "b"), build(tmp_path / "c", seed=1)
    fa = dataset_fingerprint(a)
    assert len(fa) == 32 and json.loads((a / "meta.json").read_text())["fingerprint"] == fa
    assert dataset_fingerprint(b) == fa and dataset_fingerprint(c) != fa
    assert load_dataset(a).fingerprint == fa and dataset_fingerprint(a, recompute=True) == fa
    meta = json.loads((a / "meta.json").read_text())
    assert (meta["task"], meta["size"]) == ("sudoku", 4)
    del meta["fingerprint"]  # a dataset built before fingerprints: computed from the files, the same value
    (a / "meta.json").write_text(json.dumps(meta))
    assert dataset_fingerprint(a) == fa
    labels = np.load(a / "train" / "labels.npy")
    labels[0, 0] = 1 + labels[0, 0] % 4
    np.save(a / "train" / "labels.npy", labels)
    assert dataset_fingerprint(a) != fa and dataset_fingerprint(b, recompute=True) == fa
    # ARC: the build time and the task file's path are not content; the test answers are
    (tmp_path / "one").mkdir(), (tmp_path / "two").mkdir()
    t1, t2 = arc_task(tmp_path / "one" / "t.json"), arc_task(tmp_path / "two" / "t.json")
    d1 = arc.build_arc(tmp_path / "arc1", test_task_files=[t1], augments=2, progress=False)
    d2 = arc.build_arc(tmp_path / "arc2", test_task_files=[t2], augments=2, progress=False)
    assert dataset_fingerprint(d1) == dataset_fingerprint(d2) == dataset_fingerprint(d1, recompute=True)
    assert json.loads((d1 / "meta.json").read_text())["size"] == 30
    tasks = json.loads((d1 / arc.TEST_TASKS).read_text())
    tasks["outputs"]["t"] = [[[2]]]
    (d1 / arc.TEST_TASKS).write_text(json.dumps(tasks))
    assert dataset_fingerprint(d1, recompute=True) != dataset_fingerprint(d2)


def test_read_csv_rows_skips_blank_lines_and_numbers_lines(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text(HEADER + "a,b,c,1\n\n" + "d,e,f,2\n")
    assert [n for n, _ in read_csv_rows(path)] == [2, 4]
