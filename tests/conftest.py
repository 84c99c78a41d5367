import numpy as np
import pytest
import torch

from trm.data.format import write_dataset

# one thread: the tiny models here gain nothing from two, and two threads on a loaded 2-core machine wait on
# each other (a test that takes 2 s on idle cores took over 60 s beside a training run)
torch.set_num_threads(1)


def make_sort_dataset(path, n_train=256, n_test=64, seq_len=8, vocab=6, seed=0):
    """A toy task in the common format: the label is the sorted input (tokens 2..vocab-1)."""
    rng = np.random.default_rng(seed)

    def split(n):
        x = rng.integers(2, vocab, (n, seq_len)).astype(np.uint8)
        return {"inputs": x, "labels": np.sort(x, axis=1), "puzzle_ids": rng.integers(0, 3, n).astype(np.int32)}

    return write_dataset(path, {"task": "toy", "seq_len": seq_len, "vocab_size": vocab, "num_puzzle_ids": 3},
                         {"train": split(n_train), "test": split(n_test)})


@pytest.fixture
def sort_data(tmp_path):
    return make_sort_dataset(tmp_path / "sort")
