"""The 8 symmetries of the square (ids 0 identity, 1-3 rotations, 4-5 flips, 6-7 transposes), written out by hand, and their inverses."""

import numpy as np
import pytest

from trm.data.dihedral import INVERSE, augment_square, dihedral

G = np.array([[1, 2, 3],
              [4, 5, 6]])
EXPECTED = {
    0: [[1, 2, 3], [4, 5, 6]],
    1: [[3, 6], [2, 5], [1, 4]],        # rot90, counter-clockwise
    2: [[6, 5, 4], [3, 2, 1]],          # rot180
    3: [[4, 1], [5, 2], [6, 3]],        # rot270 (= clockwise)
    4: [[3, 2, 1], [6, 5, 4]],          # flip left-right
    5: [[4, 5, 6], [1, 2, 3]],          # flip up-down
    6: [[1, 4], [2, 5], [3, 6]],        # transpose
    7: [[6, 3], [5, 2], [4, 1]],        # anti-transpose: reflection in the other diagonal
}


@pytest.mark.parametrize("k", range(8))
def test_each_transform_and_its_inverse(k):
    assert dihedral(G, k).tolist() == EXPECTED[k]
    assert np.array_equal(dihedral(dihedral(G, k), INVERSE[k]), G)
    batch = np.stack([G, G + 10])  # the last two axes are turned, leading axes kept
    assert np.array_equal(dihedral(batch, k)[1], dihedral(G + 10, k))


def test_the_eight_form_a_group():
    sq = np.arange(16).reshape(4, 4)
    images = [dihedral(sq, k).tobytes() for k in range(8)]
    assert len(set(images)) == 8
    for a in range(8):
        for b in range(8):
            assert dihedral(dihedral(sq, a), b).tobytes() in images
    with pytest.raises(ValueError):
        dihedral(sq, 8)


def test_augment_square_turns_input_and_label_alike():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 9, (64, 25))
    y = x * 10 + 1
    ax, ay = augment_square(x, y, 5, rng)
    assert np.array_equal(ay, ax * 10 + 1)
    turned = {next(k for k in range(8) if np.array_equal(dihedral(x[i].reshape(5, 5), k).reshape(-1), ax[i]))
              for i in range(64)}
    assert turned == set(range(8))
