"""Mazes like Maze-Hard (REFERENCE.md section 3): a square grid of walls with a start S and a goal G; the label
is the input with the cells of a shortest S-G path marked `o`. The hard filter keeps mazes whose shortest path
is longer than a threshold (Maze-Hard: 30x30, > 110 steps).

Two wall models, both sampled exactly (plain rejection: S and G uniform over distinct open cells, the maze kept
only if its shortest S-G path is longer than `min_path`, so the accepted mazes are "the wall model, conditioned
on a long shortest path", nothing reweighted):

- `carved` (default): a perfect maze carved on the lattice of cells at even offsets (a uniform spanning tree,
  drawn by Wilson's loop-erased random walks, so every perfect maze is equally likely), then every remaining
  wall between two neighbouring cells knocked out with probability `loop_prob`, which adds loops and with them
  mazes that have several shortest paths. The lattice offset is drawn per maze. Corridor mazes make long
  shortest paths common: a 30x30 maze passes the > 110 filter about once in a few draws.
- `random`: every cell is a wall independently with probability `wall_density`. Long shortest paths are
  very rare here (at 30x30 and any density, about 1 in 20,000 draws exceeds 110 steps: the longest distances
  in such grids are ~40-50 steps), so this model suits small CPU-scale sets (15x15, > 30 steps).

The breadth-first searches of a whole batch of grids advance together as boolean array operations (one numpy
step per BFS layer).

Tokens: PAD 0, then `#`, ` `, `S`, `G`, `o` -> 1..5 (vocab 6); every cell is scored.
"""

from __future__ import annotations

import csv
import functools
import time

import numpy as np
from tqdm import tqdm

from .format import write_dataset

CHARS = "# SGo"
WALL, OPEN, START, GOAL, PATH = 1, 2, 3, 4, 5  # tokens
_NEIGHBOURS = ((-1, 0), (1, 0), (0, -1), (0, 1))


def _shift_or(a: np.ndarray) -> np.ndarray:
    """For a (B, H, W) boolean array, the cells with a 4-neighbour set in `a`."""
    out = np.zeros_like(a)
    out[:, 1:] |= a[:, :-1]
    out[:, :-1] |= a[:, 1:]
    out[:, :, 1:] |= a[:, :, :-1]
    out[:, :, :-1] |= a[:, :, 1:]
    return out


def bfs_distances(open_: np.ndarray, source: np.ndarray, max_steps: int | None = None,
                  target: np.ndarray | None = None) -> np.ndarray:
    """Breadth-first distances from one source cell per grid, all grids at once.

    open_: (B, H, W) bool, source: (B, H, W) bool with one cell set. Returns int32 (B, H, W), -1 = unreachable
    (or not reached before the search stopped: with `target`, a (B, H, W) bool with one cell per grid, it stops
    once every grid's target is reached; the cells nearer than the target all have their distances then).
    """
    B, H, W = open_.shape
    frontier = source & open_
    reached = frontier.copy()
    unreached = (~reached).astype(np.int16)
    dist = np.zeros(open_.shape, dtype=np.int16)  # += 1 for every layer a cell is still unreached
    step = 0
    limit = max_steps if max_steps is not None else H * W
    while step < limit:
        frontier = _shift_or(frontier) & open_ & ~reached
        if target is not None:  # grids whose target is reached need no more layers
            frontier &= (target & ~reached).any((1, 2))[:, None, None]
        if not frontier.any():
            break
        step += 1
        reached |= frontier
        dist += unreached
        unreached = (~reached).astype(np.int16)
    return np.where(reached, dist, -1).astype(np.int32)


def shortest_path_mask(d_start: np.ndarray, goal: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """One shortest path from S to `goal` (cells with distance d, d-1, ..., 0), walking back from G and
    choosing uniformly among the neighbours one step closer. Returns a (H, W) bool mask including S and G."""
    H, W = d_start.shape
    r, c = goal
    mask = np.zeros((H, W), dtype=bool)
    mask[r, c] = True
    while d_start[r, c] > 0:
        want = d_start[r, c] - 1
        options = [(r + dr, c + dc) for dr, dc in _NEIGHBOURS
                   if 0 <= r + dr < H and 0 <= c + dc < W and d_start[r + dr, c + dc] == want]
        r, c = options[rng.integers(len(options))]
        mask[r, c] = True
    return mask


def _random_cells(open_: np.ndarray, rng: np.random.Generator, exclude: np.ndarray | None = None) -> np.ndarray:
    """One uniformly random open cell per grid (flat index), -1 where the grid has none."""
    B = len(open_)
    flat = open_.reshape(B, -1).copy()
    if exclude is not None:
        flat[np.arange(B), np.maximum(exclude, 0)] &= exclude < 0
    keys = np.where(flat, rng.random(flat.shape), -1.0)
    idx = keys.argmax(1)
    return np.where(flat.any(1), idx, -1)


@functools.lru_cache(maxsize=8)
def _lattice(R: int, C: int) -> tuple[list[list[int]], list[tuple[int, int]]]:
    """Neighbour lists of an R x C cell lattice, and each cell's (row, col)."""
    cells = [divmod(i, C) for i in range(R * C)]
    nbrs = [[(r + dr) * C + c + dc for dr, dc in _NEIGHBOURS if 0 <= r + dr < R and 0 <= c + dc < C]
            for r, c in cells]
    return nbrs, cells


def carve(size: int, rng: np.random.Generator, loop_prob: float = 0.0) -> np.ndarray:
    """One carved maze: (size, size) bool, True = open. A uniform spanning tree of the cell lattice (Wilson's
    algorithm), then each wall left between two neighbouring cells opened with probability loop_prob."""
    off_r, off_c = rng.integers(0, 2, 2).tolist() if size % 2 == 0 else (0, 0)
    R, C = (size - off_r + 1) // 2, (size - off_c + 1) // 2
    nbrs, cells = _lattice(R, C)
    open_ = np.zeros((size, size), dtype=bool)
    open_[off_r::2, off_c::2] = True
    in_tree = [False] * (R * C)
    in_tree[int(rng.integers(R * C))] = True
    u, k = rng.random(16 * R * C).tolist(), 0  # pre-drawn uniforms: the walk is a plain Python loop
    nxt = [0] * (R * C)
    for start in rng.permutation(R * C).tolist():
        cur = start
        while not in_tree[cur]:  # random walk until the tree is hit, remembering the last exit of each cell
            if k == len(u):
                u, k = rng.random(16 * R * C).tolist(), 0
            nb = nbrs[cur]
            nxt[cur] = nb[int(u[k] * len(nb))]
            cur = nxt[cur]
            k += 1
        cur = start
        while not in_tree[cur]:  # the loop-erased walk joins the tree; open the wall between each pair
            in_tree[cur] = True
            (r, c), (r2, c2) = cells[cur], cells[nxt[cur]]
            open_[off_r + r + r2, off_c + c + c2] = True
            cur = nxt[cur]
    if loop_prob > 0:
        walls = np.zeros_like(open_)
        walls[off_r::2, off_c + 1:2 * C - 1 + off_c:2] = True  # between horizontal neighbours
        walls[off_r + 1:2 * R - 1 + off_r:2, off_c::2] = True  # between vertical neighbours
        open_ |= walls & (rng.random(open_.shape) < loop_prob)
    return open_


def generate_mazes(n: int, *, size: int = 30, style: str = "carved", wall_density: float = 0.4,
                   loop_prob: float = 0.05, min_path: int = 110, seed: int = 0, batch: int | None = None,
                   progress: bool = True, max_seconds: float | None = None):
    """`n` mazes with a shortest S-G path longer than `min_path` steps.

    Returns (inputs, labels, path_lengths, unique) with inputs/labels (n, size*size) uint8 tokens and
    `unique` True where the marked shortest path is the only one. Raises ValueError when the acceptance rate is
    so low that the request cannot finish (no maze accepted in 50 batches, or over max_seconds)."""
    if size < 2:
        raise ValueError("maze size must be at least 2")
    if style not in ("carved", "random"):
        raise ValueError(f"unknown maze style '{style}' (carved or random)")
    if not 0 <= wall_density < 1 or not 0 <= loop_prob <= 1:
        raise ValueError("wall density must be in [0, 1) and loop probability in [0, 1]")
    batch = batch or (256 if style == "carved" else 2048)
    if min_path >= size * size:
        raise ValueError(f"no path in a {size}x{size} grid is longer than {min_path} steps")
    rng = np.random.default_rng(seed)
    inputs, labels, lengths, unique = [], [], [], []
    tried, empty_batches, t0 = 0, 0, time.monotonic()
    bar = tqdm(total=n, desc=f"mazes {size}x{size} (path > {min_path})", disable=not progress, unit="maze")
    while len(inputs) < n:
        if style == "carved":
            open_ = np.stack([carve(size, rng, loop_prob) for _ in range(batch)])
        else:
            open_ = rng.random((batch, size, size)) >= wall_density
        s = _random_cells(open_, rng)
        g = _random_cells(open_, rng, exclude=s)
        ok = (s >= 0) & (g >= 0)
        src = np.zeros((batch, size * size), dtype=bool)
        src[np.flatnonzero(ok), s[ok]] = True
        tgt = np.zeros(open_.shape, dtype=bool).reshape(batch, -1)
        tgt[np.flatnonzero(ok), g[ok]] = True
        dist = bfs_distances(open_, src.reshape(batch, size, size), target=tgt.reshape(open_.shape))
        d_goal = np.where(ok, dist.reshape(batch, -1)[np.arange(batch), np.maximum(g, 0)], -1)
        keep = np.flatnonzero(ok & (d_goal > min_path))
        tried += batch
        empty_batches = 0 if len(keep) else empty_batches + 1
        if empty_batches >= 50 or (max_seconds and time.monotonic() - t0 > max_seconds):
            raise ValueError(f"after {tried} {style} {size}x{size} mazes, only {len(inputs)} had a shortest path "
                             f"longer than {min_path}: lower --min-path"
                             + (" or change --wall-density" if style == "random" else ""))
        for i in keep[: n - len(inputs)]:
            grid = np.where(open_[i], OPEN, WALL).astype(np.uint8)
            sr, sc = divmod(int(s[i]), size)
            gr, gc = divmod(int(g[i]), size)
            grid[sr, sc], grid[gr, gc] = START, GOAL
            path = shortest_path_mask(dist[i], (gr, gc), rng)
            label = grid.copy()
            label[path & (grid == OPEN)] = PATH
            inputs.append(grid.reshape(-1)), labels.append(label.reshape(-1))
            lengths.append(int(d_goal[i])), unique.append(path_stats(grid, size)[1])
        bar.update(min(len(keep), bar.total - bar.n))
    bar.close()
    return np.stack(inputs), np.stack(labels), np.array(lengths, dtype=np.int32), np.array(unique)


# --- text form, CSV -------------------------------------------------------------------------------------
def to_text(tokens: np.ndarray, size: int) -> str:
    g = np.asarray(tokens).reshape(size, size)
    return "\n".join("".join(CHARS[int(t) - 1] if t else "?" for t in row) for row in g)


_LUT = np.zeros(256, dtype=np.uint8)
for _i, _ch in enumerate(CHARS):
    _LUT[ord(_ch)] = _i + 1


def encode_text(text: str) -> np.ndarray:
    """A maze string in the `# SGo` charset (row-major, no separators) -> tokens 1..5."""
    bad = set(text) - set(CHARS)
    if bad:
        raise ValueError(f"unexpected character {sorted(bad)[0]!r} (maze charset is '{CHARS}')")
    return _LUT[np.frombuffer(text.encode(), dtype=np.uint8)]


def read_csv(path):
    """Maze-Hard CSV `source,question,answer,rating` (question/answer: size*size characters of `# SGo`)."""
    qs, ans, ratings = [], [], []
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or [h.strip() for h in header[:4]] != ["source", "question", "answer", "rating"]:
            raise ValueError(f"{path}: expected the header source,question,answer,rating")
        for n, row in enumerate(reader, 2):
            if len(row) < 4:
                raise ValueError(f"{path}:{n}: expected 4 fields")
            if len(row[1]) != len(row[2]) or int(np.sqrt(len(row[1]))) ** 2 != len(row[1]):
                raise ValueError(f"{path}:{n}: question and answer must be the same square grid")
            try:
                qs.append(encode_text(row[1])), ans.append(encode_text(row[2]))
            except ValueError as e:
                raise ValueError(f"{path}:{n}: {e}") from None
            ratings.append(int(float(row[3])))
    if not qs:
        raise ValueError(f"{path}: no mazes")
    if len({len(q) for q in qs}) > 1:
        raise ValueError(f"{path}: mazes of different sizes")
    return np.stack(qs), np.stack(ans), np.array(ratings, dtype=np.int32)


# --- checking answers -----------------------------------------------------------------------------------
def path_stats(question: np.ndarray, size: int) -> tuple[int, bool]:
    """(shortest S-G path length or -1, whether that shortest path is unique). Unique exactly when the cells
    that lie on some shortest path (d(S, c) + d(c, G) = d(S, G)) number d(S, G) + 1: one per BFS layer."""
    q = np.asarray(question).reshape(1, size, size)
    open_ = q != WALL
    d_s, d_g = bfs_distances(open_, q == START)[0], bfs_distances(open_, q == GOAL)[0]
    goal = (q == GOAL)[0]
    if not goal.any() or d_s[goal].max() < 0:
        return -1, False
    length = int(d_s[goal].max())
    on_shortest = (d_s >= 0) & (d_g >= 0) & (d_s + d_g == length)
    return length, int(on_shortest.sum()) == length + 1


def is_shortest_path(question: np.ndarray, answer: np.ndarray, size: int) -> bool:
    """Whether `answer` is the question with the cells of *a* shortest S-G path marked (there may be several
    shortest paths, so exact match with the label is stricter than this)."""
    q, a = np.asarray(question).reshape(size, size), np.asarray(answer).reshape(size, size)
    if not np.array_equal(np.where(a == PATH, OPEN, a), q):  # only open cells may become path cells
        return False
    open_ = (q != WALL)[None]
    start, goal = (q == START)[None], (q == GOAL)[None]
    d = bfs_distances(open_, start)[0]
    length = int(d[goal[0]].max()) if goal.any() else -1
    if length < 0:
        return False
    cells = (a == PATH) | (q == START) | (q == GOAL)
    if int(cells.sum()) != length + 1:
        return False
    # the marked cells must form a connected chain from S to G: BFS inside them reaches G in `length` steps
    dc = bfs_distances(cells[None], start)[0]
    return int(dc[goal[0]].max()) == length


# --- building a dataset ---------------------------------------------------------------------------------
def build_maze(out_dir, *, size=30, style="carved", wall_density=0.4, loop_prob=0.05, min_path=110, train=1000,
               test=1000, csvs=(), seed=0, overwrite=False, progress=True):
    """Generate (or read from Maze-Hard CSVs) mazes, split them with a seed and write the dataset.
    Training augmentation (the 8 dihedral transforms) happens on the fly (meta "augment": "dihedral")."""
    if csvs:
        parts = [read_csv(p) for p in csvs]
        Q = np.concatenate([p[0] for p in parts])
        A = np.concatenate([p[1] for p in parts])
        R = np.concatenate([p[2] for p in parts])
        size = int(np.sqrt(Q.shape[1]))
        unique = np.array([path_stats(q, int(np.sqrt(Q.shape[1])))[1] for q in Q], dtype=bool)
        _, first = np.unique(Q, axis=0, return_index=True)
        first = np.sort(first)
        duplicates = len(Q) - len(first)
        Q, A, R, unique = Q[first], A[first], R[first], unique[first]
        n = len(Q)
        order = np.random.default_rng(seed).permutation(n)
        n_test = min(test, n - 1) if test else max(1, n // 10)
        test_idx, train_idx = order[:n_test], order[n_test:]
        if train and train < len(train_idx):
            train_idx = np.random.default_rng([seed, 2]).choice(train_idx, size=train, replace=False)
        source = {"csv": [str(p) for p in csvs]}
    else:
        Q, A, R, unique = generate_mazes(train + test, size=size, style=style, wall_density=wall_density,
                                         loop_prob=loop_prob, min_path=min_path, seed=seed, progress=progress)
        duplicates = 0
        test_idx, train_idx = np.arange(train, train + test), np.arange(train)
        source = {"generated": train + test, "style": style, "min_path": min_path,
                  **({"wall_density": wall_density} if style == "random" else {"loop_prob": loop_prob})}

    def split(idx):
        return {"inputs": Q[idx], "labels": A[idx], "puzzle_ids": np.zeros(len(idx), dtype=np.int32),
                "difficulty": R[idx].astype(np.int32), "unique_shortest_path": unique[idx]}

    meta = {"task": "maze", "size": size, "seq_len": size * size, "vocab_size": len(CHARS) + 1,
            "num_puzzle_ids": 1, "augment": "dihedral", "charset": CHARS, "sources": [source], "seed": seed,
            "duplicates": duplicates}
    meta["unique_shortest_path_fraction"] = float(unique.mean())
    return write_dataset(out_dir, meta, {"train": split(train_idx), "test": split(test_idx)}, overwrite=overwrite)
