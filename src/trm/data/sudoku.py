"""Sudoku (4x4, 6x6, 9x9): parsing, a fast exact solver that rates puzzles, a generator of minimal puzzles,
validity-preserving augmentation, and the dataset builder (Sudoku-Extreme's format and augmentation).

Grids are flat int arrays of size*size, 0 = blank. Tokens: PAD 0, blank 1, digit d -> d+1 (vocab size+2).
"""

from __future__ import annotations

import os
from functools import lru_cache
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .format import DatasetError, check_out_dir, parse_rating, read_csv_rows, write_dataset

BOX = {4: (2, 2), 6: (2, 3), 9: (3, 3)}  # box rows x box cols


# --- geometry -------------------------------------------------------------------------------------------
@lru_cache(maxsize=None)
def _geometry(size: int):
    br, bc = BOX[size]
    cells = range(size * size)
    rows = [[r * size + c for c in range(size)] for r in range(size)]
    cols = [[r * size + c for r in range(size)] for c in range(size)]
    boxes = [[(R + r) * size + C + c for r in range(br) for c in range(bc)]
             for R in range(0, size, br) for C in range(0, size, bc)]
    units = rows + cols + boxes
    peers = [tuple(sorted({p for u in units if i in u for p in u} - {i})) for i in cells]
    return units, peers, (1 << size) - 1


def _check_size(size: int) -> None:
    if size not in BOX:
        raise ValueError(f"unsupported Sudoku size {size} (choose 4, 6 or 9)")


# --- parsing and checking -------------------------------------------------------------------------------
_SEPARATORS = set(" \t\r\n|+-")


def parse_puzzle(text: str, size: int | None = None) -> np.ndarray:
    """81 (36, 16) characters with '.' or '0' for blanks, or a grid over several lines with separators."""
    grid = parse_cells(text, size)
    problem = conflicts(grid, int(round(len(grid) ** 0.5)))
    if problem:
        raise ValueError(f"contradictory givens: {problem}")
    return grid


def parse_cells(text: str, size: int | None = None) -> np.ndarray:
    """`parse_puzzle` without the rule check: the cells as written (an answer is checked by `answer_problem`)."""
    digits, positions = [], []
    for i, ch in enumerate(text):
        if ch in _SEPARATORS:
            continue
        if ch == "." or ch == "0":
            digits.append(0)
        elif ch.isdigit():
            digits.append(int(ch))
        else:
            raise ValueError(f"stray character {ch!r} at position {i + 1}")
        positions.append(i)
    n = len(digits)
    if size is None:
        size = {16: 4, 36: 6, 81: 9}.get(n)
        if size is None:
            raise ValueError(f"found {n} cells, expected 81 (9x9), 36 (6x6) or 16 (4x4)")
    _check_size(size)
    if n != size * size:
        raise ValueError(f"found {n} cells, expected {size * size} for a {size}x{size} Sudoku")
    grid = np.array(digits, dtype=np.int8)
    if grid.max(initial=0) > size:
        bad = int(np.argmax(grid > size))
        raise ValueError(f"digit {grid[bad]} at cell {bad + 1} is out of range for a {size}x{size} Sudoku")
    return grid


def conflicts(grid, size: int) -> str | None:
    """The first rule broken by the filled cells of a grid, described in words, or None."""
    units, _, _ = _geometry(size)
    names = ["row"] * size + ["column"] * size + ["box"] * size
    g = np.asarray(grid).reshape(-1)
    for k, unit in enumerate(units):
        vals = [int(g[c]) for c in unit if g[c]]
        seen = set()
        for v in vals:
            if v in seen:
                return f"two {v}s in {names[k]} {k % size + 1}"
            seen.add(v)
    return None


def is_solution(grid, size: int) -> bool:
    g = np.asarray(grid).reshape(-1)
    return len(g) == size * size and bool(np.all((g >= 1) & (g <= size))) and conflicts(g, size) is None


def keeps_givens(puzzle, solution) -> bool:
    p, s = np.asarray(puzzle).reshape(-1), np.asarray(solution).reshape(-1)
    return bool(np.all((p == 0) | (p == s)))


def _cell(i: int, size: int) -> str:
    return f"r{i // size + 1}c{i % size + 1}"


def answer_problem(puzzle, answer, size: int) -> str | None:
    """Why `answer` is not a solution of `puzzle` under Sudoku's rules, in words, or None when it is one."""
    p, a = np.asarray(puzzle).reshape(-1), np.asarray(answer).reshape(-1)
    if len(a) != len(p):
        return f"the answer has {len(a)} cells, the question {len(p)}"
    blanks = np.flatnonzero(a == 0)
    if len(blanks):
        return f"the answer leaves {len(blanks)} cell{'s' * (len(blanks) > 1)} blank ({_cell(blanks[0], size)} first)"
    changed = np.flatnonzero((p != 0) & (p != a))
    if len(changed):
        i = changed[0]
        return f"the answer changes given cell {_cell(i, size)} ({p[i]} -> {a[i]})"
    problem = conflicts(a, size)
    return f"the answer is not a solved grid: {problem}" if problem else None


def encode(grid) -> np.ndarray:
    """Digits (0 blank) -> tokens (blank 1, digit d -> d+1)."""
    return (np.asarray(grid).reshape(-1).astype(np.int16) + 1).astype(np.uint8)


def decode(tokens) -> np.ndarray:
    """Tokens -> digits; PAD and blank become 0."""
    t = np.asarray(tokens).reshape(-1).astype(np.int16)
    return np.clip(t - 1, 0, None).astype(np.int8)


def format_grid(grid, size: int) -> str:
    br, bc = BOX[size]
    g = np.asarray(grid).reshape(size, size)
    lines = []
    for r in range(size):
        if r and r % br == 0:
            lines.append("+".join(["-" * (2 * bc + 1)] * (size // bc)))
        cells = [str(int(v)) if v else "." for v in g[r]]
        lines.append("|".join(" " + " ".join(cells[c:c + bc]) + " " for c in range(0, size, bc)))
    return "\n".join(lines)


# --- the solver -----------------------------------------------------------------------------------------
def _propagate(cand: list, queue: list, units, peers, full: int) -> bool:
    """Constraint propagation on bitmask candidates: naked singles, then hidden singles, to a fixed point."""
    while True:
        while queue:
            c = queue.pop()
            m = cand[c]
            for p in peers[c]:
                pm = cand[p]
                if pm & m:
                    pm &= ~m
                    if not pm:
                        return False
                    cand[p] = pm
                    if not pm & (pm - 1):
                        queue.append(p)
        for unit in units:  # hidden singles: a digit with one place left in a unit
            once = twice = 0
            for c in unit:
                m = cand[c]
                twice |= once & m
                once |= m
            if once != full:
                return False
            hidden = once & ~twice
            while hidden:
                bit = hidden & -hidden
                hidden ^= bit
                for c in unit:
                    if cand[c] & bit:
                        if cand[c] != bit:
                            cand[c] = bit
                            queue.append(c)
                        break
        if not queue:
            return True


def _search(cand, units, peers, full, limit, out, counter, rng):
    best, best_n = -1, 99
    for i, m in enumerate(cand):
        if m & (m - 1):
            k = m.bit_count()
            if k < best_n:
                best, best_n = i, k
                if k == 2:
                    break
    if best < 0:
        out.append(cand)
        return
    m, bits = cand[best], []
    while m:
        b = m & -m
        m ^= b
        bits.append(b)
    if rng is not None:
        rng.shuffle(bits)
    for b in bits:
        counter[0] += 1  # a guess: a value tried at a branching point
        nxt = cand[:]
        nxt[best] = b
        if _propagate(nxt, [best], units, peers, full):
            _search(nxt, units, peers, full, limit, out, counter, rng)
        if len(out) >= limit:
            return


def solve(puzzle, size: int = 9, limit: int = 1, rng: np.random.Generator | None = None):
    """Exact solver: returns (solutions, guesses). limit=2 tells unique from multiple solutions.

    `guesses` (values tried at branching points) is the puzzle's rating: 0 means propagation alone solves it.
    """
    _check_size(size)
    units, peers, full = _geometry(size)
    g = np.asarray(puzzle).reshape(-1)
    cand = [full] * (size * size)
    queue = []
    for i, v in enumerate(g.tolist()):
        if v:
            if not cand[i] & (1 << (v - 1)):
                return [], 0
            cand[i] = 1 << (v - 1)
            queue.append(i)
    # a given clashing with a peer given leaves that peer empty during propagation
    if conflicts(g, size):
        return [], 0
    out, counter = [], [0]
    if _propagate(cand, queue, units, peers, full):
        _search(cand, units, peers, full, limit, out, counter, rng)
    sols = [np.array([m.bit_length() for m in c], dtype=np.int8) for c in out]
    return sols, counter[0]


def count_solutions(puzzle, size: int = 9, limit: int = 2) -> int:
    return len(solve(puzzle, size, limit=limit)[0])


# --- generator ------------------------------------------------------------------------------------------
def generate_minimal(size: int, rng: np.random.Generator):
    """A random full grid, then givens removed in random order while the solution stays unique, until no
    given can be removed: a minimal puzzle. Returns (puzzle, solution)."""
    _check_size(size)
    sols, _ = solve(np.zeros(size * size, dtype=np.int8), size, rng=rng)
    solution = sols[0]
    puzzle = solution.copy()
    for cell in rng.permutation(size * size):
        keep = puzzle[cell]
        puzzle[cell] = 0
        if count_solutions(puzzle, size) != 1:
            puzzle[cell] = keep
    return puzzle, solution


# --- augmentation ---------------------------------------------------------------------------------------
def _line_maps(B: int, size: int, group: int, rng) -> np.ndarray:
    """Per row of the batch, a permutation of `size` lines: the groups (bands or stacks) are shuffled and so
    are the lines inside each group, the moves that keep every Sudoku valid."""
    n_groups = size // group
    order = np.argsort(rng.random((B, n_groups)), axis=1)
    inner = np.argsort(rng.random((B, n_groups, group)), axis=2)
    return (order[:, :, None] * group + inner).reshape(B, size)


def augment(inputs: np.ndarray, labels: np.ndarray, size: int, rng: np.random.Generator):
    """The same random validity-preserving transform on inputs and labels of each row, a new one per row:
    digit permutation, band/row and stack/column shuffles, and a transpose when boxes are square.
    (6x6 has 2x3 boxes: a transpose would turn them into 3x2 and break the rules, so it is never used.)"""
    inputs, labels = np.asarray(inputs), np.asarray(labels)
    B = len(inputs)
    br, bc = BOX[size]
    rows, cols = _line_maps(B, size, br, rng), _line_maps(B, size, bc, rng)
    idx = rows[:, :, None] * size + cols[:, None, :]                        # (B, size, size)
    if br == bc:
        flip = rng.random(B) < 0.5
        idx[flip] = idx[flip].transpose(0, 2, 1)
    idx = idx.reshape(B, -1)
    lut = np.tile(np.arange(size + 2, dtype=inputs.dtype), (B, 1))       # PAD and blank stay
    lut[:, 2:] = (np.argsort(rng.random((B, size)), axis=1) + 2).astype(inputs.dtype)
    aug = lambda t: np.take_along_axis(lut, np.take_along_axis(t, idx, 1).astype(np.int64), 1)  # noqa: E731
    return aug(inputs), aug(labels)


# --- reading sources ------------------------------------------------------------------------------------
def read_puzzle_list(path, size: int | None = None) -> list[str]:
    """One puzzle a line (81, 36 or 16 characters: digits, '.' or '0' for blanks); '#' comments and blank lines
    skipped. With `size`, every puzzle must have size*size cells and digits 1..size."""
    out = []
    allowed = set(".0123456789"[:size + 2] if size else ".0123456789")
    lengths = (size * size,) if size else (16, 36, 81)
    try:
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                p = line.split()[0]
                if len(p) not in lengths:
                    raise DatasetError(f"{path} line {n}: expected a puzzle of {' or '.join(map(str, lengths))} "
                                       f"characters{f' (a {size}x{size} Sudoku)' if size else ''}, got {len(p)}")
                bad = set(p) - allowed
                if bad:
                    raise DatasetError(f"{path} line {n}: unexpected character {min(bad)!r} "
                                       f"(allowed: digits 1-{size or 9}, '.' or '0' for a blank)")
                out.append(p)
    except UnicodeDecodeError as e:
        raise DatasetError(f"{path}: not a UTF-8 text file (byte {e.start}: {e.reason})") from None
    return out


def _read_csv_lines(path):
    """`read_csv`, and the line of each puzzle."""
    qs, ans, ratings, sources, lines = [], [], [], [], []
    size = None
    for n, row in read_csv_rows(path):
        where = f"{path} line {n}"
        try:
            q = parse_puzzle(row[1], size)
        except ValueError as e:
            raise DatasetError(f"{where}: the question: {e}") from None
        size = size or int(round(len(q) ** 0.5))  # the first puzzle sets the size of the file
        try:
            a = parse_cells(row[2], size)
        except ValueError as e:
            raise DatasetError(f"{where}: the answer: {e}") from None
        problem = answer_problem(q, a, size)
        if problem:
            raise DatasetError(f"{where}: {problem}")
        qs.append(q), ans.append(a), ratings.append(parse_rating(row[3], where)), sources.append(row[0])
        lines.append(n)
    return np.array(qs, dtype=np.int8), np.array(ans, dtype=np.int8), np.array(ratings, dtype=np.int32), sources, lines


def read_csv(path):
    """Sudoku-Extreme CSV `source,question,answer,rating`: (questions, answers, ratings, sources). Every answer
    must solve its question (keep its givens, fill every cell, break no rule); a row that does not, or any
    malformed row, is refused with its file and line."""
    return _read_csv_lines(path)[:4]


def sudoku_pools(data_root) -> dict[str, list[Path]]:
    """The named groups of puzzle lists in the shared data (see shared/data/README.md)."""
    root = Path(data_root)
    return {"17clue": [root / "puzzles2_17_clue"],
            "hard": [root / "puzzles3_magictour_top1465", root / "puzzles5_forum_hardest_1905_11+",
                     root / "puzzles6_forum_hardest_1106"]}


# --- building a dataset ---------------------------------------------------------------------------------
def _solve_one(args):
    text, size = args
    try:
        puzzle = parse_puzzle(text, size)
    except ValueError:
        return None, None, -1
    sols, guesses = solve(puzzle, size, limit=2)
    if len(sols) != 1:
        return None, None, -len(sols) - 2  # -2: no solution, -4: several
    return puzzle, sols[0], guesses


def _generate_one(args):
    size, seed = args
    rng = np.random.default_rng(seed)
    puzzle, solution = generate_minimal(size, rng)
    return puzzle, solution, solve(puzzle, size)[1]


def _map(fn, items, workers, progress, desc):
    workers = workers or os.cpu_count() or 1
    bar = dict(total=len(items), desc=desc, disable=not progress, unit="puzzle", leave=False)
    if workers <= 1 or len(items) < 200:
        return [fn(x) for x in tqdm(items, **bar)]
    with Pool(workers) as pool:
        return list(tqdm(pool.imap(fn, items, chunksize=64), **bar))


def build_sudoku(out_dir, *, size=9, lists=(), csvs=(), generate=0, train=None, test=None, test_fraction=0.1,
                 seed=0, workers=None, overwrite=False, progress=True) -> Path:
    """Collect puzzles (lists are solved and rated here, CSVs carry answers and ratings, the generator makes
    minimal puzzles), deduplicate on the question, split with a seed (a puzzle lives on one side only) and
    write the dataset. Augmentation happens at training time (meta "augment"), the test split stays as it is.

    The split is drawn before anything is solved, and only puzzles that land in a split are solved: a
    1000-puzzle subsample of a 100k pool costs 11k solves, not 100k. A puzzle without a unique solution is
    skipped and the next one in the seeded order takes its place, so the splits keep their requested sizes."""
    _check_size(size)
    check_out_dir(out_dir, overwrite)  # before the solving, not after
    if test is None and not 0 < test_fraction < 1:
        raise ValueError(f"--test-fraction must lie between 0 and 1, not {test_fraction}")
    n_cells = size * size
    keys, texts, questions, answers, ratings, origin, sources = [], [], [], [], [], [], []
    seen, duplicates = {}, 0

    def add(key: bytes, text, q, a, r, src, where="a generated puzzle"):
        nonlocal duplicates
        if key in seen:
            first = seen[key]
            if a is not None and answers[first] is not None and not np.array_equal(a, answers[first]):
                raise DatasetError(f"{where}: the question of a puzzle of {sources[origin[first]].get('file')} "
                                   f"with another answer: a puzzle with two solutions has no one label")
            duplicates += 1
            return
        seen[key] = len(keys)
        keys.append(key), texts.append(text), questions.append(q), answers.append(a), ratings.append(r)
        origin.append(src)

    for path in lists:
        lines = read_puzzle_list(path, size)
        sources.append({"file": str(path), "puzzles": len(lines)})
        for t in lines:  # the key treats '.' and '0' alike; parsing waits until the puzzle is picked
            add(t.replace(".", "0").encode(), t, None, None, None, len(sources) - 1)
    for path in csvs:
        q, a, r, _, lines = _read_csv_lines(path)
        if q.shape[1] != n_cells:
            side = int(np.sqrt(q.shape[1]))
            raise DatasetError(f"{path} holds {side}x{side} puzzles, not {size}x{size} (--size {side} reads it)")
        sources.append({"file": str(path), "puzzles": len(q)})
        for i in range(len(q)):
            add((q[i] + 48).astype(np.uint8).tobytes(), None, q[i], a[i], int(r[i]), len(sources) - 1,
                f"{path} line {lines[i]}")
    if generate:
        seeds = np.random.default_rng([seed, 1]).integers(0, 2**63 - 1, generate)
        results = _map(_generate_one, [(size, int(s)) for s in seeds], workers, progress, f"generating {size}x{size}")
        for q, a, r in results:
            add((q + 48).astype(np.uint8).tobytes(), None, q, a, r, len(sources))
        sources.append({"generated": generate, "size": size, "minimal": True})
    n = len(keys)
    n_test = test if test is not None else max(1, int(round(test_fraction * n)))
    room = n if train == 0 else n - 1  # an evaluation-only set (--train 0) may put every puzzle in the test split
    if not n:
        raise ValueError("no puzzles: the sources given are empty")
    if not 1 <= n_test <= room:
        asked = f"--test {n_test}" if test is not None else f"--test-fraction {test_fraction} ({n_test} puzzles)"
        keep = "" if train == 0 else " (one at least stays for training; --train 0 makes an evaluation-only set)"
        raise ValueError(f"{asked} does not fit the {n} distinct puzzles given: the test split takes 1 to {room}{keep}")
    if train is not None and not 0 <= train <= n - n_test:
        raise ValueError(f"--train {train} must be between 0 and the {n - n_test} puzzles left after the test split")
    rejected = 0

    def take(order: np.ndarray, k: int, desc: str) -> tuple[list[int], int]:
        """The first k puzzles of `order` that have a unique solution (solving those that need it), and how
        far into `order` that reached."""
        nonlocal rejected
        picked, pos = [], 0
        while len(picked) < k and pos < len(order):
            chunk = order[pos:pos + k - len(picked)]
            pos += len(chunk)
            todo = [i for i in chunk if answers[i] is None]
            results = _map(_solve_one, [(texts[i], size) for i in todo], workers, progress, desc)
            for i, (q, a, r) in zip(todo, results):
                questions[i], answers[i], ratings[i] = (q, a, r) if r >= 0 else (None, False, None)
            ok = [i for i in chunk if answers[i] is not False]
            rejected += len(chunk) - len(ok)
            picked += ok
        return picked, pos

    order = np.random.default_rng(seed).permutation(n)
    test_idx, used = take(order, n_test, "solving the test split")
    rest = order[used:]
    if train is not None:  # the seeded subsample: a prefix of a fixed permutation of what the test left
        train_idx, _ = take(np.random.default_rng([seed, 2]).permutation(rest), train, "solving the train split")
    else:
        train_idx, _ = take(rest, len(rest), "solving the train split")
    if len(test_idx) < n_test or (train is not None and len(train_idx) < train) or (train is None and not train_idx):
        raise ValueError(f"too few puzzles with a unique solution ({rejected} rejected) for --test {n_test}"
                         + (f" and --train {train}" if train is not None else ""))

    def split(idx):  # --train 0 makes an evaluation-only set (an empty train split)
        grids = lambda col: np.stack([col[i] for i in idx]) if idx else np.zeros((0, n_cells), np.int8)  # noqa
        return {"inputs": encode(grids(questions)).reshape(len(idx), n_cells),
                "labels": encode(grids(answers)).reshape(len(idx), n_cells),
                "puzzle_ids": np.zeros(len(idx), dtype=np.int32),
                "ratings": np.array([ratings[i] for i in idx], dtype=np.int32),
                "source": np.array([origin[i] for i in idx], dtype=np.int16)}

    meta = {"task": "sudoku", "size": size, "box": list(BOX[size]), "seq_len": n_cells, "vocab_size": size + 2,
            "num_puzzle_ids": 1, "augment": "sudoku", "sources": sources, "seed": seed, "rejected": rejected,
            "duplicates": duplicates, "candidates": n}
    if progress and (rejected or duplicates):
        print(f"skipped {rejected} puzzles without a unique solution and {duplicates} duplicates")
    return write_dataset(out_dir, meta, {"train": split(train_idx), "test": split(test_idx)}, overwrite=overwrite)
