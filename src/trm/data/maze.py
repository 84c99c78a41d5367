"""Mazes like Maze-Hard (HRM's and TRM's maze set): a square grid of walls with a start S and a goal G; the label
is the input with the cells of a shortest S-G path marked `o`. "Hard" = the shortest path is longer than
`min_path` steps (Maze-Hard: 30x30, > 110).

Maze-Hard's recipe (the HRM paper, after the maze generator of Lehnert et al. 2024): walls at random (30-50% of
the cells), S and G at random open cells, kept when the shortest path is long. Followed literally, a 30x30 grid
passes the > 110 filter about once in 35,000 draws (measured), too rare for rejection on a CPU. So the generator
looks at a whole grid at once and finds *every* ordered pair of open cells more than `min_path` steps apart
(`long_pairs`):

1. walls: each cell a wall with probability p, p drawn per grid from `wall_density` (a range or one value);
2. each open region of at least min_path + 2 cells: BFS from any cell, then from the farthest cell a found, then
   from the midpoint m of that a-b path: the region's diameter is at most 2 ecc(m). Most regions end here;
3. otherwise every cell v that could end a long path (ecc(v) <= d(v, m) + ecc(m), so d(v, m) > min_path -
   ecc(m)) gets its own BFS; the region's cells more than min_path steps from v are v's partners.

The searches of a whole batch of grids advance together on bit-packed rows (a grid row is one uint64; a BFS layer
is a few shifts and ORs), which is what makes this fast.

Two samplers, each exact for the distribution it names:

- default: a grid is kept when it has at least one long pair; S, G = a uniformly random long pair of it. Grids
  are conditioned on being hard, not weighted by how many long pairs they hold.
- `exact=True`: the distribution of literal rejection (S, G uniform over open cells, kept when the path is long).
  That weights a hard grid by q = long pairs / (open * (open - 1)), so a hard grid is kept with probability q / c,
  where the envelope c is twice the largest q among 256 pilot grids (then discarded). A grid with q > c would be
  under-weighted: such grids are counted (`envelope_exceeded`). Tens of times slower than the default.

Random-wall mazes almost never have a unique shortest path (under 1% of hard ones), so the label marks the path
that a fixed tie-break picks (`shortest_paths`), and evaluation also reports whether a prediction is *a*
shortest path (`valid_paths`). With `unique_path=True` the generator instead walls cells off the label's path,
one at a time, until that path is the only shortest one (`make_unique`): then the label is the maze's answer,
not one of several, and no tie-break rule has to be learned. Training augmentation turns a maze by one of the
8 dihedral transforms and labels it again by the same rule.

Tokens: PAD 0, then `#`, ` `, `S`, `G`, `o` -> 1..5 (vocab 6); every cell is scored.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .dihedral import augment_square
from .format import DatasetError, check_out_dir, parse_rating, read_csv_rows, write_dataset

CHARS = "# SGo"
WALL, OPEN, START, GOAL, PATH = 1, 2, 3, 4, 5  # tokens
MAX_SIZE = 64  # a grid row is one uint64
_ONE = np.uint64(1)


# --- bit-packed breadth-first search over a batch of grids -----------------------------------------------
def pack(cells: np.ndarray) -> np.ndarray:
    """(B, H, W) bool -> (B, H) uint64, bit j of row i = cell (i, j)."""
    W = cells.shape[-1]
    return (cells.astype(np.uint64) << np.arange(W, dtype=np.uint64)).sum(-1, dtype=np.uint64)


def unpack(rows: np.ndarray, W: int) -> np.ndarray:
    return ((rows[..., None] >> np.arange(W, dtype=np.uint64)) & _ONE).astype(bool)


def _count(rows: np.ndarray) -> np.ndarray:
    return np.bitwise_count(rows).sum(-1, dtype=np.int64)


def _grow(f: np.ndarray) -> np.ndarray:
    """Cells with a 4-neighbour in f (and f itself); bits past the grid edge are cut by the caller's mask."""
    g = f | (f << _ONE) | (f >> _ONE)
    g[:, 1:] |= f[:, :-1]
    g[:, :-1] |= f[:, 1:]
    return g


def bfs_bits(open_: np.ndarray, src: np.ndarray, limit: np.ndarray | None = None):
    """BFS from the cells of `src` inside `open_` (both (B, H) uint64), every grid at once.

    Stops a grid when its frontier empties or after limit[b] layers. Returns (reached, layers, last): the cells
    reached, the number of layers run (= eccentricity of src when not limited) and the last frontier (the
    farthest cells; the cells at distance exactly limit[b] when the limit stopped it)."""
    reached, last = src.copy(), src.copy()
    layers = np.zeros(len(src), dtype=np.int64)
    idx = np.arange(len(src)) if limit is None else np.flatnonzero(limit > 0)
    o, seen, f = open_[idx], src[idx], src[idx]
    n, cap = 0, None if limit is None else limit[idx]
    while len(idx):
        nf = _grow(f) & o & ~seen
        done = ~nf.any(1)
        n += 1
        if cap is not None:
            done |= cap <= n - 1
        if done.any():  # write the finished grids back, keep working on the rest
            d = np.flatnonzero(done)
            reached[idx[d]], last[idx[d]], layers[idx[d]] = seen[d], f[d], n - 1
            keep = ~done
            idx, o, seen, f, nf = idx[keep], o[keep], seen[keep], f[keep], nf[keep]
            if cap is not None:
                cap = cap[keep]
        seen |= nf
        f = nf
    return reached, layers, last


def _pick(rows: np.ndarray, W: int, rng: np.random.Generator) -> np.ndarray:
    """One uniformly random set cell of each (non-empty) bit grid, as a one-cell bit grid."""
    b = np.arange(len(rows))
    per_row = np.bitwise_count(rows).astype(np.int64)
    cum = per_row.cumsum(1)
    k = (rng.random(len(rows)) * cum[:, -1]).astype(np.int64)  # the k-th set cell, counting row-major
    r = np.minimum((cum <= k[:, None]).sum(1), rows.shape[1] - 1)
    k -= cum[b, r] - per_row[b, r]
    c = (unpack(rows[b, r], W).cumsum(1) <= k[:, None]).sum(1)
    out = np.zeros(rows.shape, dtype=np.uint64)
    out[b, r] = _ONE << c.astype(np.uint64)
    return out


def long_pairs(open_: np.ndarray, min_path: int, rng: np.random.Generator):
    """Every ordered pair of open cells more than `min_path` steps apart, for a batch of grids.

    open_: (B, H, W) bool. Returns (grid, source, partners): for each cell that starts a long pair, the index of
    its grid, its flat cell index and the bit grid (H,) of the cells more than min_path steps from it."""
    B, H, W = open_.shape
    ob = pack(open_)
    todo = ob.copy()  # open cells whose region has not been looked at
    found = []  # (grid index, region, candidate ends) per region that may hold a long pair
    while True:
        sel = np.flatnonzero(_count(todo) >= min_path + 2)  # a path of > min_path steps has >= min_path + 2 cells
        if not len(sel):
            break
        region, _, far = bfs_bits(ob[sel], _pick(todo[sel], W, rng))
        todo[sel] &= ~region
        big = _count(region) >= min_path + 2
        sel, region, far, o = sel[big], region[big], far[big], ob[sel[big]]
        if not len(sel):
            continue
        a = _pick(far, W, rng)  # double sweep: a is far from anything, b far from a
        _, D, far_a = bfs_bits(o, a)
        b = _pick(far_a, W, rng)
        _, _, mid_a = bfs_bits(o, a, limit=D // 2)
        _, _, mid_b = bfs_bits(o, b, limit=D - D // 2)
        m = _pick(mid_a & mid_b, W, rng)  # on a shortest a-b path, half way
        _, ecc_m, _ = bfs_bits(o, m)
        maybe = 2 * ecc_m > min_path  # any two cells are at most 2 ecc(m) apart
        sel, region, m, ecc_m, o = sel[maybe], region[maybe], m[maybe], ecc_m[maybe], o[maybe]
        if not len(sel):
            continue
        near, _, _ = bfs_bits(o, m, limit=np.maximum(min_path - ecc_m, 0))
        near[ecc_m > min_path] = 0  # m itself can end a long path
        found += zip(sel, region, region & ~near)
    if not found:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, H), np.uint64)
    grids, regions, cands = (np.array(x) for x in zip(*found))
    g, r, c = np.nonzero(unpack(cands, W))  # one BFS per candidate end
    src = np.zeros((len(g), H), dtype=np.uint64)
    src[np.arange(len(g)), r] = _ONE << c.astype(np.uint64)
    within, _, _ = bfs_bits(ob[grids[g]], src, limit=np.full(len(g), min_path))
    partners = regions[g] & ~within
    keep = partners.any(1)
    return grids[g][keep], (r * W + c)[keep], partners[keep]


# --- generation -------------------------------------------------------------------------------------------
def _densities(wall_density, n: int, rng: np.random.Generator) -> np.ndarray:
    lo, hi = (wall_density, wall_density) if np.isscalar(wall_density) else wall_density
    return rng.uniform(lo, hi, n) if hi > lo else np.full(n, float(lo))


def _hard_grids(size, wall_density, min_path, batch, rng):
    """A batch of random grids, and for each hard one: its long pairs and q (long pairs / ordered open pairs)."""
    open_ = rng.random((batch, size, size)) >= _densities(wall_density, batch, rng)[:, None, None]
    grid, src, partners = long_pairs(open_, min_path, rng)
    n_open = open_.reshape(batch, -1).sum(1)
    counts = _count(partners)
    hard = np.unique(grid)
    q = np.bincount(grid, weights=counts, minlength=batch)[hard] / (n_open[hard] * (n_open[hard] - 1.0))
    return open_, [(i, src[grid == i], partners[grid == i], counts[grid == i]) for i in hard], q


# neighbours in reading order: the tie-break of the label's path
_MOVES = ((-1, 0), (0, -1), (0, 1), (1, 0))


def shortest_paths(open_: np.ndarray, starts: np.ndarray, goals: np.ndarray) -> np.ndarray:
    """The label's shortest S-G path in each grid of `open_` (B, H, W), as bool masks with S and G: walking back
    from G, each step goes to the neighbour one step closer to S that comes first in reading order (up, left,
    right, down). A fixed rule, so that a maze has one label, as an A* with fixed tie-breaking would give."""
    B, H, W = open_.shape
    src = np.zeros(open_.shape, dtype=bool)
    src.reshape(B, -1)[np.arange(B), starts] = True
    dist = np.pad(bfs_distances(open_, src), ((0, 0), (1, 1), (1, 1)), constant_values=-1)
    b, r, c = np.arange(B), goals // W + 1, goals % W + 1
    if (dist[b, r, c] < 0).any():
        raise ValueError("a maze has no path from S to G")
    mask = np.zeros(open_.shape, dtype=bool)
    mask[b, r - 1, c - 1] = True
    here = dist[b, r, c]
    while (here > 0).any():
        closer = np.stack([dist[b, r + dr, c + dc] == here - 1 for dr, dc in _MOVES], 1)
        step = closer.argmax(1)
        walking = here > 0
        r = np.where(walking, r + np.array([m[0] for m in _MOVES])[step], r)
        c = np.where(walking, c + np.array([m[1] for m in _MOVES])[step], c)
        mask[b, r - 1, c - 1] = True
        here = dist[b, r, c]
    return mask


def make_unique(open_: np.ndarray, starts: np.ndarray, goals: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Add walls to `open_` (B, H, W) until the label's S-G path (`shortest_paths`) is the only shortest one: each
    round walls one random cell per grid among those on another shortest path (d(S, c) + d(c, G) = d(S, G), c not
    on the label's path). Walls only lengthen paths and the label's path is untouched, so its length and the
    `min_path` filter stay as they were. Returns the new open mask."""
    open_ = open_.copy()
    flat = open_.reshape(len(open_), -1)
    path = shortest_paths(open_, starts, goals)
    src, dst = np.zeros_like(open_), np.zeros_like(open_)
    src.reshape(len(open_), -1)[np.arange(len(open_)), starts] = True
    dst.reshape(len(open_), -1)[np.arange(len(open_)), goals] = True
    todo = np.arange(len(open_))  # the grids that may still have another shortest path
    while len(todo):
        d_s, d_g = bfs_distances(open_[todo], src[todo]), bfs_distances(open_[todo], dst[todo])
        length = d_s.reshape(len(todo), -1)[np.arange(len(todo)), goals[todo]]
        other = (d_s >= 0) & (d_g >= 0) & (d_s + d_g == length[:, None, None]) & ~path[todo]
        more = other.reshape(len(todo), -1).any(1)
        for i, cells in zip(todo[more], other[more]):  # one wall a round: fewer than closing every other cell
            flat[i, rng.choice(np.flatnonzero(cells.reshape(-1)))] = False
        todo = todo[more]
    return open_


def label(questions: np.ndarray, size: int) -> np.ndarray:
    """Questions (N, size*size) tokens with one S and one G each -> labels with the path cells marked `o`."""
    q = np.asarray(questions).reshape(-1, size * size)
    paths = shortest_paths((q != WALL).reshape(-1, size, size), (q == START).argmax(1), (q == GOAL).argmax(1))
    return np.where(paths.reshape(q.shape) & (q == OPEN), PATH, q).astype(np.uint8)


def augment(inputs: np.ndarray, labels: np.ndarray, size: int, rng: np.random.Generator):
    """Training augmentation: a random dihedral transform per maze, labelled again by the fixed tie-break (a
    transformed label would follow the rule in a turned frame, contradicting the other copies)."""
    x, _ = augment_square(inputs, labels, size, rng)
    return x, label(x, size)


def generate_mazes(n: int, *, size: int = 30, wall_density=(0.3, 0.5), min_path: int = 110, exact: bool = False,
                   unique_path: bool = False, seed: int = 0, batch: int = 2048, progress: bool = True,
                   max_seconds: float | None = None) -> dict:
    """`n` random-wall mazes whose shortest S-G path is longer than `min_path` steps (see the module doc); with
    `unique_path`, walls are added until each has one shortest path (`make_unique`).

    Returns {"inputs", "labels": (n, size*size) uint8, "path_length": (n,), "unique_shortest_path": (n,) bool,
    "grids_drawn", "envelope", "envelope_exceeded"}. Raises ValueError when hard grids are so rare that the
    request cannot finish (none in 20 batches, or over max_seconds)."""
    lo, hi = (wall_density, wall_density) if np.isscalar(wall_density) else wall_density
    if not 2 <= size <= MAX_SIZE:
        raise ValueError(f"maze size must be 2..{MAX_SIZE}, not {size}")
    if not 0 <= lo <= hi < 1:
        raise ValueError(f"wall density must lie in [0, 1), got {wall_density}")
    if min_path < 1 or min_path >= size * size - 1:
        raise ValueError(f"no path in a {size}x{size} grid is longer than {min_path} steps")
    rng = np.random.default_rng(seed)
    envelope, exceeded = 1.0, 0
    if exact:  # the pilot grids only set the envelope; none of them is kept
        pilot, t0 = [], time.monotonic()
        while len(pilot) < 256:
            pilot += list(_hard_grids(size, wall_density, min_path, batch, rng)[2])
            if not pilot and time.monotonic() - t0 > (max_seconds or 60):
                raise ValueError(f"no {size}x{size} grid with a path longer than {min_path} found: lower --min-path")
        envelope = min(1.0, 2 * max(pilot))
    inputs, made = [], 0
    drawn, empty, t0 = 0, 0, time.monotonic()
    bar = tqdm(total=n, desc=f"mazes {size}x{size} (path > {min_path})", disable=not progress, unit="maze")
    while made < n:
        open_, hard, q = _hard_grids(size, wall_density, min_path, batch, rng)
        drawn += batch
        empty = 0 if hard else empty + 1
        if empty >= 20 or (max_seconds and time.monotonic() - t0 > max_seconds):
            raise ValueError(f"after {drawn} random {size}x{size} grids, {made} had a path longer than "
                             f"{min_path} steps: lower --min-path or change --wall-density")
        if exact:
            exceeded += int((q > envelope).sum())
            hard = [h for h, qi, u in zip(hard, q, rng.random(len(hard))) if u < qi / envelope]
        hard = hard[: n - made]
        if not hard:
            continue
        starts, goals = [], []
        for i, src, partners, counts in hard:
            j = rng.choice(len(src), p=counts / counts.sum())  # S weighted by its partners: uniform over pairs
            starts.append(int(src[j]))
            goals.append(int(rng.choice(np.flatnonzero(unpack(partners[j], size).reshape(-1)))))
        kept = open_[[h[0] for h in hard]]
        if unique_path:
            kept = make_unique(kept, np.array(starts), np.array(goals), rng)
        grids = np.where(kept, OPEN, WALL).astype(np.uint8).reshape(len(hard), -1)
        grids[np.arange(len(hard)), starts], grids[np.arange(len(hard)), goals] = START, GOAL
        inputs.append(grids)
        made += len(hard)
        bar.update(len(hard))
    bar.close()
    inputs = np.concatenate(inputs)
    labels = label(inputs, size)
    lengths = (labels == PATH).sum(1) + 1
    return {"inputs": inputs, "labels": labels, "path_length": lengths.astype(np.int32),
            "unique_shortest_path": unique_shortest_paths(inputs, size), "grids_drawn": drawn,
            "envelope": envelope, "envelope_exceeded": exceeded}


# --- checking answers -------------------------------------------------------------------------------------
def bfs_distances(open_: np.ndarray, source: np.ndarray) -> np.ndarray:
    """Breadth-first distances from the source cells, all grids at once: (B, H, W) bool each -> int32 (B, H, W),
    -1 = unreachable."""
    frontier = source & open_
    reached = frontier.copy()
    dist = np.where(reached, 0, -1).astype(np.int32)
    step = 0
    while frontier.any():
        step += 1
        grown = frontier.copy()
        grown[:, 1:] |= frontier[:, :-1]
        grown[:, :-1] |= frontier[:, 1:]
        grown[:, :, 1:] |= frontier[:, :, :-1]
        grown[:, :, :-1] |= frontier[:, :, 1:]
        frontier = grown & open_ & ~reached
        reached |= frontier
        dist[frontier] = step
    return dist


def _endpoints(questions: np.ndarray, size: int):
    q = np.asarray(questions).reshape(-1, size, size)
    return q, q != WALL, q == START, q == GOAL


def unique_shortest_paths(questions: np.ndarray, size: int) -> np.ndarray:
    """Whether each maze has exactly one shortest S-G path: the cells on some shortest path (d(S, c) + d(c, G) =
    d(S, G)) then number d(S, G) + 1, one per BFS layer (two shortest paths differ in some layer)."""
    _, open_, start, goal = _endpoints(questions, size)
    d_s, d_g = bfs_distances(open_, start), bfs_distances(open_, goal)
    length = np.where(goal, d_s, -1).max((1, 2))
    on = (d_s >= 0) & (d_g >= 0) & (d_s + d_g == length[:, None, None])
    return (length >= 0) & (on.sum((1, 2)) == length + 1)


def valid_paths(questions: np.ndarray, answers: np.ndarray, size: int) -> np.ndarray:
    """Whether each answer is its question with the cells of *a* shortest S-G path marked (a maze may have
    several shortest paths, so this is looser than matching the label): only open cells turn into path cells,
    and the marked cells with S and G are d(S, G) + 1 cells through which G is d(S, G) steps from S."""
    q, open_, start, goal = _endpoints(questions, size)
    a = np.asarray(answers).reshape(q.shape)
    same = (np.where(a == PATH, OPEN, a) == q).all((1, 2))
    length = np.where(goal, bfs_distances(open_, start), -1).max((1, 2))
    marked = (a == PATH) | start | goal
    along = np.where(goal, bfs_distances(marked, start), -1).max((1, 2))
    return same & (length >= 0) & (marked.sum((1, 2)) == length + 1) & (along == length)


# --- text form, CSV -------------------------------------------------------------------------------------
def to_text(tokens: np.ndarray, size: int, sep: str = "\n") -> str:
    g = np.asarray(tokens).reshape(size, size)
    return sep.join("".join(CHARS[int(t) - 1] if 1 <= t <= len(CHARS) else "?" for t in row) for row in g)


_LUT = np.zeros(256, dtype=np.uint8)
for _i, _ch in enumerate(CHARS):
    _LUT[ord(_ch)] = _i + 1


def encode_text(text: str) -> np.ndarray:
    """A maze string in the `# SGo` charset (row-major, no separators) -> tokens 1..5."""
    bad = set(text) - set(CHARS)
    if bad:
        raise ValueError(f"unexpected character {sorted(bad)[0]!r} (maze charset is '{CHARS}')")
    return _LUT[np.frombuffer(text.encode(), dtype=np.uint8)]


def path_problem(question: np.ndarray, answer: np.ndarray, size: int) -> str | None:
    """Why `answer` is not its question with *a* shortest S-G path marked (what `valid_paths` checks), in
    words, or None when it is."""
    if valid_paths(question[None], answer[None], size)[0]:
        return None
    q, open_, start, goal = _endpoints(question[None], size)
    a = np.asarray(answer).reshape(q.shape)
    if not (np.where(a == PATH, OPEN, a) == q).all():
        return "the answer must be the question with path cells marked 'o'"
    length = int(np.where(goal, bfs_distances(open_, start), -1).max())
    if length < 0:
        return "S and G are not connected: the maze has no path"
    marked = int((a == PATH).sum())
    if not marked:
        return f"no path is marked (a shortest S-G path has {length - 1} cells between S and G)"
    if marked != length - 1:
        return f"{marked} cells are marked 'o', a shortest S-G path has {length - 1} between S and G"
    return "the cells marked 'o' do not join S to G"



def parse_question(text: str, size: int) -> np.ndarray:
    """A maze question typed by a person: `size` rows of '#', ' ', 'S', 'G' (or one line of size*size) -> tokens."""
    cells = "".join(line.rstrip("\r") for line in text.strip("\n").split("\n"))
    if len(cells) != size * size:
        raise ValueError(f"found {len(cells)} cells, expected {size * size} for a {size}x{size} maze")
    tokens = encode_text(cells)
    if (tokens == PATH).any():
        raise ValueError("a question has no path cells ('o'): give the maze with '#', ' ', 'S' and 'G'")
    if (tokens == START).sum() != 1 or (tokens == GOAL).sum() != 1:
        raise ValueError("a maze needs exactly one S and one G")
    return tokens


def read_csv(path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Maze-Hard CSV `source,question,answer,rating` (question/answer: size*size characters of `# SGo`).
    Returns (questions, answers, ratings). Every answer must mark a shortest S-G path of its question; a row
    that does not, or any malformed row, is refused with its file and line."""
    qs, ans, ratings, lines = [], [], [], []
    for n, row in read_csv_rows(path):
        where = f"{path} line {n}"
        side = int(round(len(row[1]) ** 0.5))
        if len(row[1]) != len(row[2]) or side * side != len(row[1]) or not 2 <= side <= MAX_SIZE:
            raise DatasetError(f"{where}: question and answer must be the same square grid (2..{MAX_SIZE} a side), "
                               f"got {len(row[1])} and {len(row[2])} characters")
        if qs and len(row[1]) != len(qs[0]):
            raise DatasetError(f"{where}: a {side}x{side} maze, line {lines[0]} is "
                               f"{int(round(len(qs[0]) ** 0.5))}x{int(round(len(qs[0]) ** 0.5))}: one size a file")
        try:
            q, a = encode_text(row[1]), encode_text(row[2])
        except ValueError as e:
            raise DatasetError(f"{where}: {e}") from None
        for token, name in ((START, "S"), (GOAL, "G")):
            k = int((q == token).sum())
            if k != 1:
                raise DatasetError(f"{where}: a maze needs exactly one S and one G, the question has "
                                   f"{k or 'no'} {name}{'s' * (k > 1)}")
        qs.append(q), ans.append(a), ratings.append(parse_rating(row[3], where)), lines.append(n)
    qs, ans = np.stack(qs), np.stack(ans)
    side = int(round(qs.shape[1] ** 0.5))
    bad = np.flatnonzero(~valid_paths(qs, ans, side))
    if len(bad):
        i = bad[0]
        raise DatasetError(f"{path} line {lines[i]}: {path_problem(qs[i], ans[i], side)}"
                           + (f" ({len(bad) - 1} more such rows)" if len(bad) > 1 else ""))
    return qs, ans, np.array(ratings, dtype=np.int32)


def write_csv(path, inputs: np.ndarray, labels: np.ndarray, ratings, source: str = "trm") -> None:
    """The Maze-Hard CSV format, so that generated mazes can be shared or read back with `read_csv`."""
    size = int(round(inputs.shape[1] ** 0.5))
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["source", "question", "answer", "rating"])
        for q, a, r in zip(inputs, labels, ratings):
            w.writerow([source, to_text(q, size, ""), to_text(a, size, ""), int(r)])


# --- building a dataset ---------------------------------------------------------------------------------
def build_maze(out_dir, *, size: int = 30, wall_density=(0.3, 0.5), min_path: int = 110, exact: bool = False,
               unique_path: bool = False, train: int = 1000, test: int = 1000, csvs=(), test_csvs=(), seed: int = 0,
               overwrite: bool = False, progress: bool = True) -> Path:
    """Generate mazes (or read Maze-Hard CSVs) and write the dataset. Training augmentation happens on the fly:
    generated mazes are turned and labelled again by the tie-break (meta "augment": "maze"); CSV mazes keep
    their own labels, turned with the maze (meta "augment": "dihedral"). The test split is used as it is.

    CSVs: with `test_csvs` (Maze-Hard ships train.csv and test.csv) the split is the files' own; otherwise the
    mazes of `csvs` are split with the seed (`test` of them held out). `train` > 0 keeps a seeded subsample."""
    if unique_path and (csvs or test_csvs):
        raise ValueError("--unique-path changes generated mazes; CSV mazes keep their own labels")
    out_dir = check_out_dir(out_dir, overwrite)  # before minutes of generation, not after
    if test < (0 if test_csvs else 1) or train < 0:
        raise ValueError(f"--test must be >= 1 and --train >= 0 (got {test} and {train})")
    extra_meta: dict = {}
    if csvs or test_csvs:
        def read(paths):
            parts = [read_csv(p) for p in paths]
            return tuple(np.concatenate([p[i] for p in parts]) for i in range(3)) if parts else None
        pool, held = read(csvs), read(test_csvs)
        size = int(round((pool or held)[0].shape[1] ** 0.5))
        if pool is not None and held is not None and pool[0].shape[1] != held[0].shape[1]:
            raise ValueError("the training and test CSVs hold mazes of different sizes")
        rng = np.random.default_rng(seed)
        pool, dup = _dedup(pool) if pool is not None else (None, 0)
        if held is not None:
            held, dup_t = _dedup(held)
            dup += dup_t
            if pool is not None:  # a maze in both files stays on the test side only
                test_keys = {q.tobytes() for q in held[0]}
                mask = np.array([q.tobytes() not in test_keys for q in pool[0]])
                extra_meta["dropped_from_train"] = int((~mask).sum())
                pool = tuple(x[mask] for x in pool)
                if not len(pool[0]):
                    raise DatasetError("every maze of the --csv files is also in the --test-csv files: the train "
                                       "split would be empty (leave out --csv for an evaluation-only set)")
            tr, te = pool or tuple(x[:0] for x in held), held
        else:
            order = rng.permutation(len(pool[0]))
            if test >= len(order):
                fix = f"give --test {len(order) - 1} or less, or" if len(order) > 1 else "give"
                raise DatasetError(f"--test {test} leaves no maze for training: the CSVs hold {len(order)} distinct "
                                   f"mazes ({fix} --test-csv for a given test split, alone for a test-only set)")
            te, tr = (tuple(x[order[:test]] for x in pool), tuple(x[order[test:]] for x in pool))
        if train and train < len(tr[0]):
            pick = np.sort(rng.choice(len(tr[0]), size=train, replace=False))
            tr = tuple(x[pick] for x in tr)
        splits = {name: {"inputs": q, "labels": a, "csv_rating": r}
                  for name, (q, a, r) in (("train", tr), ("test", te))}
        source = {"csv": [str(p) for p in csvs], "test_csv": [str(p) for p in test_csvs], "duplicates": dup}
    else:
        g = generate_mazes(train + test, size=size, wall_density=wall_density, min_path=min_path, exact=exact,
                           unique_path=unique_path, seed=seed, progress=progress)
        (tr, dup), (te, dup_t) = _dedup((g["inputs"][:train], g["labels"][:train])), \
            _dedup((g["inputs"][train:], g["labels"][train:]))
        seen = {q.tobytes() for q in tr[0]}  # tiny grids repeat: a maze is on one side only
        fresh = np.array([q.tobytes() not in seen for q in te[0]], dtype=bool)
        if not fresh.any():
            raise DatasetError(f"all {test} test mazes generated repeat training mazes ({size}x{size} grids with a "
                               f"path over {min_path} steps are few): ask for fewer --train or a larger --size")
        splits = {"train": {"inputs": tr[0], "labels": tr[1]},
                  "test": {"inputs": te[0][fresh], "labels": te[1][fresh]}}
        source = {"generated": train + test, "duplicates": dup + dup_t + int((~fresh).sum()),
                  "wall_density": list(np.broadcast_to(wall_density, 2).astype(float)), "min_path": min_path,
                  "sampler": "exact" if exact else "hard-grid", "grids_drawn": g["grids_drawn"],
                  "unique_path": unique_path}
        if exact:
            source.update(envelope=g["envelope"], envelope_exceeded=g["envelope_exceeded"])
    unique = []
    for s in splits.values():
        s["puzzle_ids"] = np.zeros(len(s["inputs"]), dtype=np.int32)
        s["unique_shortest_path"] = unique_shortest_paths(s["inputs"], size)
        s["path_length"] = ((s["labels"] == PATH).sum(1) + 1).astype(np.int32)
        unique.append(s["unique_shortest_path"])
    unique = np.concatenate(unique)
    meta = {"task": "maze", "size": size, "seq_len": size * size, "vocab_size": len(CHARS) + 1, "num_puzzle_ids": 1,
            "augment": "dihedral" if csvs or test_csvs else "maze", "charset": CHARS, "sources": [source], "seed": seed,
            "unique_shortest_path_fraction": float(unique.mean()) if len(unique) else 0.0, **extra_meta}
    return write_dataset(out_dir, meta, splits, overwrite=overwrite)


def _dedup(part):
    _, first = np.unique(part[0], axis=0, return_index=True)
    first = np.sort(first)
    return tuple(x[first] for x in part), len(part[0]) - len(first)


def parse_density(text: str):
    """'0.4' -> 0.4, '0.3:0.5' -> (0.3, 0.5) (a range: each grid draws its own density)."""
    try:
        parts = [float(x) for x in str(text).split(":")]
    except ValueError:
        raise ValueError(f"wall density must be a number or LO:HI, not '{text}'") from None
    if len(parts) == 1:
        return parts[0]
    if len(parts) != 2 or parts[0] > parts[1]:
        raise ValueError(f"wall density range must be LO:HI with LO <= HI, not '{text}'")
    return tuple(parts)


