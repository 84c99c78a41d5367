"""ARC-AGI-1 and -2: Kaggle-format JSON -> augmented 30x30 token canvases, as HRM and TRM train on them.

A *task* has demonstration pairs ("train") and test pairs. Each task is augmented into up to `augments` distinct
*versions*: version 0 is the task itself, the others a random dihedral transform x a permutation of colours 1-9
(colour 0 fixed), deduplicated on the transformed demonstrations and test inputs (never on test outputs, which
an unseen task does not have). Every version is its own puzzle identifier, so a version's puzzle embedding is
learnt from that version's demonstrations.

Train split: every pair (demonstrations and test pairs) of the training collections' tasks, and the
demonstrations of the test tasks, for every version, each at a random offset in the canvas (translation).
Test split: the test pairs of the test tasks, for every version, at the canvas corner, with the version's
transform stored per row (`dihedral`, `colour_perm`) so that answers can be mapped back. The test outputs of
test tasks are never in the train split, by id or by content (see `check_overlap`).

Tokens: PAD 0, EOS 1, colour c -> c + 2 (vocab 12). A grid sits at its offset with an EOS row below it and an
EOS column to its right, where the canvas has room; PAD is not scored.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..atomic import atomic_dir
from .dihedral import INVERSE, dihedral
from .format import FORMAT_VERSION, DatasetError, check_out_dir, content_hash

CANVAS = 30
PAD, EOS, COLOUR0 = 0, 1, 2
VOCAB = 12
COLLECTIONS = {  # version -> (collections trained on in full, collections tested on: their demos are trained on)
    "arc1": (("training", "concept"), ("evaluation",)),
    "arc2": (("training2", "concept"), ("evaluation2",)),
}
TEST_TASKS = "test_tasks.json"  # beside meta.json: test task order, true outputs, fingerprints

Grid = np.ndarray  # (h, w) int8 colours 0..9
IDENTITY = np.arange(10, dtype=np.int8)


@dataclass
class Task:
    id: str
    train: list[tuple[Grid, Grid]]
    test: list[tuple[Grid, Grid | None]]  # output None when unknown


# --- reading ---------------------------------------------------------------------------------------------
def _grid(g, where: str) -> Grid:
    """A JSON grid -> colours, refusing what a cast would bend: 1.7 (no truncation to 1), true, "3", 70000."""
    if not isinstance(g, list) or not all(isinstance(row, list) for row in g):
        raise DatasetError(f"{where}: a grid must be a list of rows of colours")
    widths = sorted({len(row) for row in g})
    if len(widths) > 1:
        raise DatasetError(f"{where}: a grid must be rectangular, got rows of {' and '.join(map(str, widths))} colours")
    if not (1 <= len(g) <= CANVAS and 1 <= widths[0] <= CANVAS):
        raise DatasetError(f"{where}: a grid must be 1..{CANVAS} x 1..{CANVAS}, got {len(g)} x "
                           f"{widths[0] if widths else 0}")
    for r, row in enumerate(g):
        for c, v in enumerate(row):
            if type(v) is not int or not 0 <= v <= 9:  # bool is an int subclass: refused by `type(v) is int`
                raise DatasetError(f"{where}: colour {json.dumps(v)} at row {r}, column {c}: colours are the "
                                   f"whole numbers 0..9")
    return np.array(g, dtype=np.int8)


def parse_task(task_id: str, challenge: dict, solutions: list | None = None, where: str = "") -> Task:
    where = where or task_id
    try:
        train = [(_grid(p["input"], f"{where} train pair {i} input"),
                  _grid(p["output"], f"{where} train pair {i} output")) for i, p in enumerate(challenge["train"])]
        test = []
        for i, p in enumerate(challenge["test"]):
            out = p.get("output", solutions[i] if solutions is not None and i < len(solutions) else None)
            test.append((_grid(p["input"], f"{where} test pair {i} input"),
                         None if out is None else _grid(out, f"{where} test pair {i} output")))
    except (KeyError, TypeError, AttributeError) as e:
        raise DatasetError(f"{where}: not an ARC task ({type(e).__name__}: {e})") from None
    if not train or not test:
        raise DatasetError(f"{where}: a task needs demonstration and test pairs")
    return Task(task_id, train, test)


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DatasetError(f"{path}: not valid JSON ({e.msg}, line {e.lineno})") from None
    except UnicodeDecodeError as e:
        raise DatasetError(f"{path}: not a UTF-8 text file (byte {e.start}: {e.reason})") from None
    except RecursionError:
        raise DatasetError(f"{path}: nested too deeply to be an ARC file") from None


def load_collection(root: str | os.PathLike, name: str) -> dict[str, Task]:
    """`{root}/arc-agi_{name}_challenges.json` (+ `_solutions.json` when present) -> tasks by id."""
    root = Path(root)
    ch_path, sol_path = root / f"arc-agi_{name}_challenges.json", root / f"arc-agi_{name}_solutions.json"
    if not ch_path.is_file():
        raise DatasetError(f"no ARC collection '{name}': {ch_path} not found")
    challenges = _read_json(ch_path)
    solutions = _read_json(sol_path) if sol_path.is_file() else {}
    if not isinstance(challenges, dict) or not isinstance(solutions, dict):
        raise DatasetError(f"{ch_path}: expected an object of task id -> task")
    return {tid: parse_task(tid, c, solutions.get(tid), f"{ch_path.name} task {tid}") for tid, c in challenges.items()}


def load_task_file(path: str | os.PathLike) -> Task:
    """One task as a JSON file: {"train": [...], "test": [...]} (the ARC repository's per-task format)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"no such task file: {path}")
    data = _read_json(path)
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: not an ARC task")
    return parse_task(path.stem, data, where=str(path))


# --- transforms --------------------------------------------------------------------------------------------
def transform(grid: Grid, k: int, perm: np.ndarray) -> Grid:
    """Recolour by `perm` (perm[0] == 0), then dihedral transform k."""
    return np.ascontiguousarray(dihedral(perm[grid], k))


def invert(grid: Grid, k: int, perm: np.ndarray) -> Grid:
    """Undo `transform(., k, perm)`."""
    return np.ascontiguousarray(np.argsort(perm).astype(np.int8)[dihedral(grid, INVERSE[k])])


def _hash_grids(grids, k: int, perm: np.ndarray) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    for g in grids:
        t = transform(g, k, perm)
        h.update(np.array(t.shape, dtype=np.int16).tobytes() + t.tobytes())
    return h.digest()


def _visible(task: Task) -> list[Grid]:
    """What a solver sees of a task: the demonstrations and the test inputs (not the test outputs)."""
    return [g for pair in task.train for g in pair] + [x for x, _ in task.test]


def fingerprint(task: Task) -> str:
    """Identifies a task by content (what a solver sees), whatever its id."""
    return _hash_grids(_visible(task), 0, IDENTITY).hex()


def versions(task: Task, augments: int, seed: int = 0) -> list[tuple[int, np.ndarray]]:
    """Up to `augments` distinct (dihedral id, colour permutation) versions of a task; the first is the identity.
    Seeded by the seed and the task id, so a task's versions do not depend on the other tasks in a build."""
    rng = np.random.default_rng([seed, zlib.crc32(task.id.encode())])
    grids = _visible(task)
    out, seen = [(0, IDENTITY)], {_hash_grids(grids, 0, IDENTITY)}
    for _ in range(4 * augments):  # a symmetric task has few distinct versions: stop trying after a while
        if len(out) >= augments:
            break
        k = int(rng.integers(8))
        perm = np.concatenate([[0], rng.permutation(9) + 1]).astype(np.int8)
        key = _hash_grids(grids, k, perm)
        if key not in seen:
            seen.add(key)
            out.append((k, perm))
    return out


# --- canvas encoding ---------------------------------------------------------------------------------------
def encode(grid: Grid, r: int = 0, c: int = 0) -> np.ndarray:
    """(h, w) colours at offset (r, c) of the 30x30 canvas with its EOS row and column -> (900,) uint8."""
    h, w = grid.shape
    canvas = np.zeros((CANVAS, CANVAS), dtype=np.uint8)
    canvas[r:r + h, c:c + w] = grid + COLOUR0
    if r + h < CANVAS:
        canvas[r + h, c:c + w + 1] = EOS
    if c + w < CANVAS:
        canvas[r:r + h + 1, c + w] = EOS
    return canvas.reshape(-1)


def decode(tokens: np.ndarray) -> Grid | None:
    """A predicted canvas -> its answer grid: the largest-area rectangle of colour tokens anchored at the top-left
    corner whose rows are each all colour (the reference's crop); None when the corner is not a colour."""
    colour = np.asarray(tokens).reshape(CANVAS, CANVAS) >= COLOUR0
    run = np.where(colour.all(1), CANVAS, np.argmin(colour, axis=1))  # colour cells at the start of each row
    width = np.minimum.accumulate(run)
    area = width * np.arange(1, CANVAS + 1)
    h = int(np.argmax(area)) + 1
    if area[h - 1] == 0:
        return None
    g = np.asarray(tokens).reshape(CANVAS, CANVAS)[:h, :width[h - 1]]
    return (g.astype(np.int16) - COLOUR0).astype(np.int8)


def _offset(rng, *grids) -> tuple[int, int]:
    H = max(g.shape[0] for g in grids)
    W = max(g.shape[1] for g in grids)
    return int(rng.integers(CANVAS - H + 1)), int(rng.integers(CANVAS - W + 1))


# --- which tasks go where ----------------------------------------------------------------------------------
def check_overlap(train_tasks: dict[str, Task], test_tasks: dict[str, Task]) -> tuple[list[str], dict[str, list]]:
    """Two ways a test task's answers could reach the train split.

    Returns (shared_ids, leaks): the test tasks whose id is also a training task (a build of the wrong
    collections, e.g. ARC-2's training2 holds 376 ARC-1 evaluation tasks: refused unless forced), and, per
    training task, the indices of its pairs (demonstrations, then test pairs) whose input is a test input of a
    test task: trained on, that pair would teach the test answer. ARC-1 has one: training task 40853293 is
    evaluation task 070dd51e under another id, test pair included."""
    shared = sorted(set(train_tasks) & set(test_tasks))
    test_inputs = {_hash_grids([x], 0, IDENTITY) for t in test_tasks.values() for x, _ in t.test}
    leaks = {}
    for tid, t in train_tasks.items():
        if tid in test_tasks:
            continue
        hit = [i for i, (x, _) in enumerate(t.train + t.test) if _hash_grids([x], 0, IDENTITY) in test_inputs]
        if hit:
            leaks[tid] = hit
    return shared, leaks


class _RowWriter:
    """Appends rows to a .npy file of known shape: the build never holds a whole split in memory."""

    def __init__(self, path: Path, dtype, shape: tuple, chunk_bytes: int = 64 << 20):
        self.f = open(path, "wb")
        np.lib.format.write_array_header_1_0(
            self.f, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": shape})
        self.dtype, self.rows, self.written = np.dtype(dtype), shape[0], 0
        self.row_shape = shape[1:]
        self.buf: list[np.ndarray] = []
        self.chunk = max(1, chunk_bytes // max(1, self.dtype.itemsize * int(np.prod(self.row_shape))))

    def add(self, row) -> None:
        self.buf.append(np.asarray(row, dtype=self.dtype).reshape(self.row_shape))
        if len(self.buf) >= self.chunk:
            self.flush()

    def flush(self) -> None:
        if self.buf:
            self.f.write(np.stack(self.buf).tobytes())
            self.written += len(self.buf)
            self.buf = []

    def close(self) -> None:
        self.flush()
        self.f.close()
        if self.written != self.rows:
            raise RuntimeError(f"{self.f.name}: wrote {self.written} rows, announced {self.rows}")


def _add(writers: dict[str, _RowWriter], **row) -> None:
    for k, v in row.items():
        writers[k].add(v)


def build_arc(out_dir, *, root=None, train_collections=(), test_collections=(), test_task_files=(),
              augments: int = 1000, translate: bool = True, task_limit: int = 0, seed: int = 0,
              force_overlap: bool = False, overwrite: bool = False, progress: bool = True) -> Path:
    """Build an ARC dataset from Kaggle-format collections in `root` (COLLECTIONS names ARC-1's and ARC-2's) and
    single-task JSON files (test tasks).

    Rows are streamed to the .npy files (the full ARC-AGI-1 set is several GB on disk, a few hundred MB in
    memory); the directory is written beside its destination and renamed into place at the end."""
    t0 = time.time()
    out = check_out_dir(out_dir, overwrite)
    if augments < 1:
        raise DatasetError("augments must be >= 1")
    if (train_collections or test_collections) and root is None:
        raise DatasetError("name the folder of the collections (root)")
    train_tasks: dict[str, Task] = {}
    for name in train_collections:
        for tid, t in load_collection(root, name).items():
            train_tasks.setdefault(tid, t)  # the same task in two training collections is trained on once
    test_tasks: dict[str, Task] = {}
    where: dict[str, str] = {}  # test task id -> the collection or file it came from
    for name in test_collections:
        for tid, t in load_collection(root, name).items():
            if tid in test_tasks and fingerprint(t) != fingerprint(test_tasks[tid]):
                raise DatasetError(f"test task {tid} differs between {where[tid]} and collection {name}")
            test_tasks.setdefault(tid, t)
            where.setdefault(tid, f"collection {name}")
    for f in test_task_files:  # the task id is the file name: two files of one name would lose a task
        t = load_task_file(f)
        if t.id in test_tasks:
            raise DatasetError(f"--task {f}: its task id '{t.id}' (the file name) is also the id of a task in "
                               f"{where[t.id]}: rename one of them")
        test_tasks[t.id], where[t.id] = t, f"--task {f}"
    if not test_tasks:
        raise DatasetError("no test tasks: name a test collection or a task file")
    shared, leaks = check_overlap(train_tasks, test_tasks)
    if shared and not force_overlap:
        raise DatasetError(f"{len(shared)} test tasks are also training tasks (e.g. {shared[0]}): the model would "
                           f"train on their test outputs. Use other collections, or --force-overlap to build anyway")
    if force_overlap:
        leaks = {}  # forced: everything as given, nothing removed
    if task_limit:  # a seeded subset of both sides, for CPU-scale runs
        rng = np.random.default_rng([seed, 1])

        def pick(tasks: dict, n: int) -> dict:
            return {k: tasks[k] for k in sorted(rng.choice(sorted(tasks), size=min(n, len(tasks)), replace=False))}
        train_tasks = pick(train_tasks, task_limit) if train_tasks else {}
        test_tasks = pick(test_tasks, max(1, task_limit // 4))

    plans = []  # (task, is_test, pairs trained on, versions, first puzzle id)
    next_id = 1  # 0 = the blank id, never trained: what an unseen task's embedding starts from
    for task, is_test in tqdm([(t, False) for t in train_tasks.values()] + [(t, True) for t in test_tasks.values()],
                              desc="augmenting tasks", disable=not progress, unit="task"):
        if is_test:
            pairs = task.train
        else:
            pairs = [p for i, p in enumerate(task.train + task.test)
                     if p[1] is not None and i not in leaks.get(task.id, ())]
        vs = versions(task, augments, seed)
        plans.append((task, is_test, pairs, vs, next_id))
        next_id += len(vs)
    n_train = sum(len(vs) * len(pairs) for _, _, pairs, vs, _ in plans)
    n_test = sum(len(vs) * len(t.test) for t, is_test, _, vs, _ in plans if is_test)

    with atomic_dir(out, kind="dataset") as tmp:
        def writers(split: str, n: int, extra: dict) -> dict[str, _RowWriter]:
            (tmp / split).mkdir()
            spec = {"inputs": (np.uint8, (n, CANVAS * CANVAS)), "labels": (np.uint8, (n, CANVAS * CANVAS)),
                    "puzzle_ids": (np.int32, (n,)), **extra}
            return {k: _RowWriter(tmp / split / f"{k}.npy", dt, shape) for k, (dt, shape) in spec.items()}
        tr = writers("train", n_train, {})
        te = writers("test", n_test, {"task_index": (np.int32, (n_test,)), "pair_index": (np.int16, (n_test,)),
                                      "dihedral": (np.int8, (n_test,)), "colour_perm": (np.int8, (n_test, 10))})
        rng = np.random.default_rng([seed, 2])  # translations
        order, outputs, prints = [], {}, {}
        bar = tqdm(total=n_train + n_test, desc="encoding", disable=not progress, unit="example")
        for task, is_test, pairs, vs, first_id in plans:
            if is_test:
                order.append(task.id)
                outputs[task.id] = [None if y is None else y.tolist() for _, y in task.test]
                prints[task.id] = fingerprint(task)
            for v, (k, perm) in enumerate(vs):
                for x, y in pairs:
                    xt, yt = transform(x, k, perm), transform(y, k, perm)
                    r, c = _offset(rng, xt, yt) if translate else (0, 0)
                    _add(tr, inputs=encode(xt, r, c), labels=encode(yt, r, c), puzzle_ids=first_id + v)
                if is_test:
                    for p, (x, y) in enumerate(task.test):
                        _add(te, inputs=encode(transform(x, k, perm)), puzzle_ids=first_id + v,
                             labels=np.zeros(CANVAS * CANVAS) if y is None else encode(transform(y, k, perm)),
                             task_index=len(order) - 1, pair_index=p, dihedral=k, colour_perm=perm)
            bar.update(len(vs) * (len(pairs) + (len(task.test) if is_test else 0)))
        bar.close()
        for w in (*tr.values(), *te.values()):
            w.close()
        meta = {"format": FORMAT_VERSION, "task": "arc", "size": CANVAS, "seq_len": CANVAS * CANVAS,
                "vocab_size": VOCAB, "num_puzzle_ids": next_id, "splits": {"train": n_train, "test": n_test},
                "augment": None,
                "sources": {"root": str(root), "train": list(train_collections), "test": list(test_collections),
                            "task_files": [str(f) for f in test_task_files]},
                "augments": augments, "translate": translate, "seed": seed, "task_limit": task_limit,
                "tasks": {"train": len(train_tasks), "test": len(test_tasks)},
                "forced_overlap": shared if force_overlap else [],
                "dropped_leaking_pairs": {k: v for k, v in leaks.items() if k in train_tasks},
                "build_seconds": round(time.time() - t0, 1)}
        (tmp / TEST_TASKS).write_text(json.dumps({"order": order, "outputs": outputs, "fingerprints": prints}) + "\n")
        meta["fingerprint"] = content_hash(tmp, meta)
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return out


def read_test_tasks(dataset_dir) -> dict:
    """{"order": [task id per task_index], "outputs": {id: [grid or None per test pair]}, "fingerprints": {id: hex}}"""
    path = Path(dataset_dir) / TEST_TASKS
    if not path.is_file():
        raise DatasetError(f"{dataset_dir} is not an ARC dataset: {TEST_TASKS} is missing")
    return _read_json(path)
