"""The 8 symmetries of the square, shared by Maze and ARC augmentation.

Ids: 0 identity, 1 rot90, 2 rot180, 3 rot270, 4 flip left-right, 5 flip up-down, 6 transpose,
7 anti-transpose. INVERSE[k] undoes k.
"""

from __future__ import annotations

import numpy as np

INVERSE = (0, 3, 2, 1, 4, 5, 6, 7)


def dihedral(grid: np.ndarray, k: int) -> np.ndarray:
    """Transform the last two axes of `grid` by symmetry k (rotations counter-clockwise, as np.rot90)."""
    if k == 0:
        return grid
    if k in (1, 2, 3):
        return np.rot90(grid, k, axes=(-2, -1))
    if k == 4:
        return np.flip(grid, -1)
    if k == 5:
        return np.flip(grid, -2)
    if k == 6:
        return np.swapaxes(grid, -2, -1)
    if k == 7:
        return np.rot90(np.swapaxes(grid, -2, -1), 2, axes=(-2, -1))
    raise ValueError(f"dihedral id must be 0..7, not {k}")


def augment_square(inputs: np.ndarray, labels: np.ndarray, side: int, rng: np.random.Generator):
    """A random dihedral transform per row of flattened (B, side*side) token grids, the same for the input
    and the label of a row."""
    B = len(inputs)
    ks = rng.integers(0, 8, B)
    x = inputs.reshape(B, side, side).copy()
    y = labels.reshape(B, side, side).copy()
    for k in range(1, 8):
        sel = ks == k
        if sel.any():
            x[sel], y[sel] = dihedral(x[sel], k), dihedral(y[sel], k)
    return x.reshape(B, -1), y.reshape(B, -1)
