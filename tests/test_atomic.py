"""Writes a kill cannot tear (trm.atomic), and the checkpoint's promise built on them: the previous checkpoint
stays usable, as checkpoint.old, until the new one is complete and on disk."""

import json
import os

import pytest
import torch

from trm.atomic import atomic_dir, atomic_file, atomic_write_json
from trm.checkpoint import CKPT_DIR, load_config, resolve_checkpoint, save_checkpoint


def _siblings(path):
    return sorted(p.name for p in path.parent.iterdir())


def test_atomic_dir_swaps_in_on_success_and_leaves_the_old_on_failure(tmp_path):
    out = tmp_path / "ds"
    with atomic_dir(out) as tmp:
        (tmp / "a.txt").write_text("one")
        assert not out.exists()  # nothing visible until the block is done
    assert (out / "a.txt").read_text() == "one" and _siblings(out) == ["ds"]
    with pytest.raises(RuntimeError):
        with atomic_dir(out) as tmp:
            (tmp / "a.txt").write_text("two")
            raise RuntimeError("killed halfway")
    assert (out / "a.txt").read_text() == "one" and _siblings(out) == ["ds"]  # the temp dir is gone too
    with atomic_dir(out) as tmp:
        (tmp / "b.txt").write_text("three")
    assert sorted(p.name for p in out.iterdir()) == ["b.txt"] and _siblings(out) == ["ds"]


def test_atomic_file_replaces_whole_or_not_at_all(tmp_path):
    path = tmp_path / "plot.png"
    atomic_write_json(tmp_path / "r.json", {"a": 1})
    assert json.loads((tmp_path / "r.json").read_text()) == {"a": 1}
    with atomic_file(path) as tmp:
        assert tmp.suffix == ".png" and tmp.parent == tmp_path  # writers that go by the suffix see it
        tmp.write_bytes(b"new")
    with pytest.raises(RuntimeError):
        with atomic_file(path) as tmp:
            tmp.write_bytes(b"torn")
            raise RuntimeError("killed halfway")
    assert path.read_bytes() == b"new" and _siblings(path) == ["plot.png", "r.json"]


def _save(run, step):
    return save_checkpoint(run, {"w": torch.full((2,), float(step))}, {"model": {}, "step": step},
                           train_state={"step": step})


def test_a_save_killed_at_the_swap_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    run = tmp_path / "run"
    _save(run, 1)
    real_replace, calls = os.replace, []

    def replace(src, dst):  # the kill comes after the old checkpoint moved aside, before the new one moved in
        calls.append((src, dst))
        if len(calls) == 2:
            raise KeyboardInterrupt
        real_replace(src, dst)
    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        _save(run, 2)
    monkeypatch.setattr(os, "replace", real_replace)
    ckpt = resolve_checkpoint(run)
    assert ckpt.name == f"{CKPT_DIR}.old" and load_config(ckpt)["step"] == 1
    assert sorted(p.name for p in run.iterdir()) == [f"{CKPT_DIR}.old"]  # no temp dir left behind
    _save(run, 3)  # the next save starts from there and cleans up
    assert load_config(resolve_checkpoint(run))["step"] == 3 and sorted(p.name for p in run.iterdir()) == [CKPT_DIR]


def test_checkpoint_files_are_fsynced_before_the_rename(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: events.append("fsync") or real_fsync(fd))
    monkeypatch.setattr(os, "replace", lambda a, b: events.append("rename") or real_replace(a, b))
    _save(tmp_path / "run", 1)
    assert events == ["fsync"] * 3 + ["rename"]  # model.safetensors, config.json, train_state.pt
    events.clear()
    _save(tmp_path / "run", 2)
    assert events == ["fsync"] * 3 + ["rename", "rename"]  # the old one aside, the new one in
