"""ARC-AGI (REFERENCE.md section 3): Kaggle-format JSON -> augmented 30x30 token canvases.

A *task* has demonstration pairs ("train") and test pairs. Every task is augmented into up to `augments`
distinct *versions* (version 0 = the task itself; the others a random dihedral transform x a permutation of
colours 1-9, colour 0 fixed, deduplicated on the transformed grids); each version is its own puzzle identifier,
so the puzzle embedding of a version is learnt from that version's demonstrations.

Train split: every pair of the training collections' tasks, and the demonstration pairs of the test tasks, for
every version, each placed at a random offset in the canvas (translation). Test split: the test pairs of the
test tasks, for every version, at the canvas corner. The test outputs of test tasks are never in the train split.

Tokens: PAD 0, EOS 1, colour c -> c + 2 (vocab 12). A grid sits at its offset with an EOS row below it and an
EOS column to its right (where the canvas has room); PAD is not scored.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .dihedral import INVERSE, dihedral
from .format import FORMAT_VERSION, DatasetError

CANVAS = 30
PAD, EOS, COLOUR0 = 0, 1, 2
VOCAB = 12
COLLECTIONS = {  # name -> (collections trained on in full, collections tested on: their demos are trained on)
    "arc1": (("training", "concept"), ("evaluation",)),
    "arc2": (("training2", "concept"), ("evaluation2",)),
}

Grid = np.ndarray  # (h, w) int8 colours 0..9


@dataclass
class Task:
    id: str
    train: list[tuple[Grid, Grid]]
    test: list[tuple[Grid, Grid | None]]  # output None when the solutions file lacks it


# --- reading ---------------------------------------------------------------------------------------------
def _grid(g, where: str) -> Grid:
    a = np.asarray(g, dtype=np.int16)
    if a.ndim != 2 or not (1 <= a.shape[0] <= CANVAS and 1 <= a.shape[1] <= CANVAS):
        raise DatasetError(f"{where}: a grid must be 1..30 x 1..30, got shape {a.shape}")
    if a.min() < 0 or a.max() > 9:
        raise DatasetError(f"{where}: colours must be 0..9")
    return a.astype(np.int8)


def parse_task(task_id: str, challenge: dict, solutions: list | None = None, where: str = "") -> Task:
    where = where or task_id
    try:
        train = [(_grid(p["input"], where), _grid(p["output"], where)) for p in challenge["train"]]
        test = []
        for i, p in enumerate(challenge["test"]):
            out = p.get("output", solutions[i] if solutions is not None and i < len(solutions) else None)
            test.append((_grid(p["input"], where), None if out is None else _grid(out, where)))
    except (KeyError, TypeError) as e:
        raise DatasetError(f"{where}: not an ARC task ({type(e).__name__}: {e})") from None
    if not train or not test:
        raise DatasetError(f"{where}: a task needs demonstration and test pairs")
    return Task(task_id, train, test)


def load_collection(root: str | os.PathLike, name: str) -> dict[str, Task]:
    """`{root}/arc-agi_{name}_challenges.json` (+ `_solutions.json` when present) -> tasks by id."""
    root = Path(root)
    ch_path, sol_path = root / f"arc-agi_{name}_challenges.json", root / f"arc-agi_{name}_solutions.json"
    if not ch_path.is_file():
        raise DatasetError(f"no ARC collection '{name}': {ch_path} not found")
    try:
        challenges = json.loads(ch_path.read_text())
        solutions = json.loads(sol_path.read_text()) if sol_path.is_file() else {}
    except json.JSONDecodeError as e:
        raise DatasetError(f"{ch_path.name}: not valid JSON ({e.msg})") from None
    return {tid: parse_task(tid, c, solutions.get(tid), f"{ch_path.name} task {tid}") for tid, c in challenges.items()}


def load_task_file(path: str | os.PathLike) -> Task:
    """One task as a JSON file: {"train": [...], "test": [...]} (the ARC repository's per-task format)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DatasetError(f"{path}: not valid JSON ({e.msg})") from None
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: not an ARC task")
    return parse_task(path.stem, data, where=str(path))


# --- transforms --------------------------------------------------------------------------------------------
def transform(grid: Grid, k: int, perm: np.ndarray) -> Grid:
    """Recolour by `perm` (perm[0] == 0), then dihedral transform k."""
    return np.ascontiguousarray(dihedral(perm[grid], k))


def invert(grid: Grid, k: int, perm: np.ndarray) -> Grid:
    inv = np.argsort(perm).astype(np.int8)
    return np.ascontiguousarray(inv[dihedral(grid, INVERSE[k])])


def _task_key(task: Task, k: int, perm: np.ndarray) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    for pair in task.train + task.test:
        for g in pair:
            if g is not None:
                t = transform(g, k, perm)
                h.update(np.array(t.shape, dtype=np.int16).tobytes() + t.tobytes())
    return h.digest()


def versions(task: Task, augments: int, rng: np.random.Generator, max_tries: int | None = None):
    """Up to `augments` distinct (k, perm) versions of a task; the first is the identity."""
    ident = np.arange(10, dtype=np.int8)
    out, seen = [(0, ident)], {_task_key(task, 0, ident)}
    tries, max_tries = 0, max_tries or 4 * augments
    while len(out) < augments and tries < max_tries:
        tries += 1
        k = int(rng.integers(8))
        perm = np.concatenate([[0], rng.permutation(9) + 1]).astype(np.int8)
        key = _task_key(task, k, perm)
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
    """The top-left rectangle of colour tokens of a canvas (a prediction at the corner), or None if empty."""
    g = np.asarray(tokens).reshape(CANVAS, CANVAS)
    colour = g >= COLOUR0
    w = int(np.argmin(colour[0])) if not colour[0].all() else CANVAS
    if w == 0:
        return None
    rows = colour[:, :w].all(1)
    h = int(np.argmin(rows)) if not rows.all() else CANVAS
    return (g[:h, :w].astype(np.int16) - COLOUR0).astype(np.int8)


def _offset(rng, *grids) -> tuple[int, int]:
    H = max(g.shape[0] for g in grids)
    W = max(g.shape[1] for g in grids)
    return int(rng.integers(CANVAS - H + 1)), int(rng.integers(CANVAS - W + 1))


# --- building ----------------------------------------------------------------------------------------------
def find_overlap(train_tasks: dict[str, Task], test_tasks: dict[str, Task]) -> list[str]:
    """Test tasks that also appear among the training tasks, by id or by identical demonstrations."""
    def key(t: Task) -> bytes:
        return _task_key(Task(t.id, t.train, []), 0, np.arange(10, dtype=np.int8))
    train_keys = {key(t) for t in train_tasks.values()}
    return sorted(tid for tid, t in test_tasks.items() if tid in train_tasks or key(t) in train_keys)


def build_arc(out_dir, *, root, train_collections=("training", "concept"), test_collections=("evaluation",),
              augments: int = 1000, translate: bool = True, task_limit: int = 0, seed: int = 0,
              force_overlap: bool = False, overwrite: bool = False, progress: bool = True) -> Path:
    """Build an ARC dataset; arrays are written straight into memory-mapped .npy files (the full ARC-AGI-1 set
    is several GB), the directory renamed into place at the end."""
    t0 = time.time()
    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise DatasetError(f"{out} already exists (pass --overwrite to replace it)")
    train_tasks: dict[str, Task] = {}
    for name in train_collections:
        for tid, t in load_collection(root, name).items():
            train_tasks.setdefault(tid, t)  # the same task in two collections is trained on once
    test_tasks: dict[str, Task] = {}
    for name in test_collections:
        test_tasks.update(load_collection(root, name))
    overlap = find_overlap(train_tasks, test_tasks)
    if overlap and not force_overlap:
        raise DatasetError(f"{len(overlap)} test tasks also appear in the training collections (e.g. {overlap[0]}): "
                           f"pass --force-overlap to build anyway")
    rng = np.random.default_rng(seed)
    if task_limit:  # a seeded subset of both sides, for CPU-scale runs
        pick = lambda d, n: {k: d[k] for k in sorted(rng.choice(sorted(d), size=min(n, len(d)), replace=False))}  # noqa: E731
        train_tasks, test_tasks = pick(train_tasks, task_limit), pick(test_tasks, max(1, task_limit // 4))
    tasks = [(t, False) for t in train_tasks.values()] + [(t, True) for t in test_tasks.values()]

    plans = []  # (task, is_test, versions, first puzzle id)
    next_id = 1  # 0 = the blank id
    for task, is_test in tqdm(tasks, desc="augmenting tasks", disable=not progress, unit="task"):
        vs = versions(task, augments, rng)
        plans.append((task, is_test, vs, next_id))
        next_id += len(vs)
    n_train = sum(len(vs) * (len(t.train) + (0 if test else sum(o is not None for _, o in t.test)))
                  for t, test, vs, _ in plans)
    n_test = sum(len(vs) * len(t.test) for t, test, vs, _ in plans if test)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    try:
        def arrays(split: str, n: int, extra: dict[str, tuple]) -> dict[str, np.ndarray]:
            (tmp / split).mkdir()
            spec = {"inputs": (np.uint8, (n, CANVAS * CANVAS)), "labels": (np.uint8, (n, CANVAS * CANVAS)),
                    "puzzle_ids": (np.int32, (n,)), **extra}
            return {k: np.lib.format.open_memmap(tmp / split / f"{k}.npy", mode="w+", dtype=dt, shape=shape)
                    for k, (dt, shape) in spec.items()}
        tr = arrays("train", n_train, {})
        te = arrays("test", n_test, {"task_index": (np.int32, (n_test,)), "pair_index": (np.int16, (n_test,)),
                                     "dihedral": (np.int8, (n_test,)), "colour_perm": (np.int8, (n_test, 10))})
        i = j = 0
        test_ids, solutions = [], {}
        bar = tqdm(total=n_train + n_test, desc="encoding", disable=not progress, unit="example")
        for task, is_test, vs, first_id in plans:
            pairs = task.train if is_test else task.train + [p for p in task.test if p[1] is not None]
            if is_test:
                test_ids.append(task.id)
                solutions[task.id] = [None if o is None else o.tolist() for _, o in task.test]
            for v, (k, perm) in enumerate(vs):
                pid = first_id + v
                for x, y in pairs:
                    xt, yt = transform(x, k, perm), transform(y, k, perm)
                    r, c = _offset(rng, xt, yt) if translate else (0, 0)
                    tr["inputs"][i], tr["labels"][i], tr["puzzle_ids"][i] = encode(xt, r, c), encode(yt, r, c), pid
                    i += 1
                if is_test:
                    for p, (x, y) in enumerate(task.test):
                        te["inputs"][j] = encode(transform(x, k, perm))
                        te["labels"][j] = 0 if y is None else encode(transform(y, k, perm))
                        te["puzzle_ids"][j], te["task_index"][j], te["pair_index"][j] = pid, len(test_ids) - 1, p
                        te["dihedral"][j], te["colour_perm"][j] = k, perm
                        j += 1
            bar.update(len(vs) * (len(pairs) + (len(task.test) if is_test else 0)))
        bar.close()
        assert i == n_train and j == n_test
        for a in (*tr.values(), *te.values()):
            a.flush()
        del tr, te
        meta = {"format": FORMAT_VERSION, "task": "arc", "seq_len": CANVAS * CANVAS, "vocab_size": VOCAB,
                "num_puzzle_ids": next_id, "splits": {"train": n_train, "test": n_test}, "augment": None,
                "sources": {"root": str(root), "train": list(train_collections), "test": list(test_collections)},
                "augments": augments, "translate": translate, "seed": seed, "task_limit": task_limit,
                "tasks": {"train": len(train_tasks), "test": len(test_tasks)}, "overlap": overlap,
                "build_seconds": round(time.time() - t0, 1)}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
        (tmp / "test_tasks.json").write_text(json.dumps({"order": test_ids, "outputs": solutions}) + "\n")
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
