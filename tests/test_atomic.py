"""Writes a kill cannot tear (trm.atomic), and the checkpoint's promise built on them: the previous checkpoint
stays usable, as checkpoint.old, until the new one is complete and on disk."""

import json
import os
import subprocess
import sys

import pytest
import torch

from trm import atomic
from trm.atomic import OverwriteRefused, atomic_dir, atomic_file, atomic_write_json, check_replaceable
from trm.checkpoint import CKPT_DIR, load_config, resolve_checkpoint, save_checkpoint


def _siblings(path):
    return sorted(p.name for p in path.parent.iterdir())


def _meta(folder):
    (folder / "meta.json").write_text('{"splits": {}}')  # what marks a dataset (atomic.KINDS)


def test_atomic_dir_swaps_in_on_success_and_leaves_the_old_on_failure(tmp_path):
    out = tmp_path / "ds"
    with atomic_dir(out) as tmp:
        (tmp / "a.txt").write_text("one")
        _meta(tmp)
        assert not out.exists()  # nothing visible until the block is done
    assert (out / "a.txt").read_text() == "one" and _siblings(out) == ["ds"]
    with pytest.raises(RuntimeError):
        with atomic_dir(out) as tmp:
            (tmp / "a.txt").write_text("two")
            raise RuntimeError("killed halfway")
    assert (out / "a.txt").read_text() == "one" and _siblings(out) == ["ds"]  # the temp dir is gone too
    with atomic_dir(out, kind="dataset") as tmp:
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


# --- what --overwrite may replace ---------------------------------------------------------------------------
def test_atomic_dir_replaces_only_what_trm_wrote(tmp_path, monkeypatch):
    mine = tmp_path / "mine"  # a user's own folder
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    plain = tmp_path / "plain.txt"
    plain.write_text("keep")
    report = tmp_path / "report"
    report.mkdir()
    (report / "report.json").write_text("{}")
    for target, kind, words in [(mine, None, "not a folder trm wrote"), (plain, None, "is a file"),
                                (report, "dataset", "not a trm dataset")]:
        with pytest.raises(OverwriteRefused, match=words):
            with atomic_dir(target, kind=kind) as tmp:
                (tmp / "meta.json").write_text('{"splits": {}}')
    assert (mine / "notes.txt").read_text() == "keep" and plain.read_text() == "keep"
    assert (report / "report.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine", "plain.txt", "report"]  # no .old, no .tmp
    ds = tmp_path / "ds"  # a dataset, then an empty folder: replaced
    ds.mkdir()
    _meta(ds)
    (tmp_path / "empty").mkdir()
    for target in (ds, tmp_path / "empty"):
        with atomic_dir(target, kind="dataset") as tmp:
            (tmp / "new").write_text("")
        assert (target / "new").is_file()
    monkeypatch.chdir(ds)  # never the current folder, nor one above it, even when it is a dataset
    for target in (".", ds, tmp_path):
        with pytest.raises(OverwriteRefused, match="current folder"):
            check_replaceable(target)
    link = tmp_path / "link"
    link.symlink_to(ds)
    with pytest.raises(OverwriteRefused, match="symbolic link"):
        check_replaceable(link)


def test_cli_data_overwrite_keeps_a_users_folder(cli, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    code, _, err = cli("data", "sudoku", "--size", "4", "--generate", "12", "--test", "2", "--out", mine,
                       "--overwrite", "--quiet")
    assert code == 2 and "refusing to replace" in err and len(err.strip().splitlines()) == 1
    assert [p.name for p in mine.iterdir()] == ["notes.txt"] and [p.name for p in tmp_path.iterdir()] == ["mine"]


# --- temporaries of killed writers ---------------------------------------------------------------------------
def _dead_pid():
    p = subprocess.Popen([sys.executable, "-c", ""])
    p.wait()
    return p.pid


def test_stale_temporaries_of_dead_writers_are_removed_and_live_ones_kept(tmp_path):
    host, dead = atomic._HOST, _dead_pid()
    stale = [tmp_path / f".ds.{host}-{dead}-0123abcd.tmp", tmp_path / f".ds.{host}-{dead}-4567abcd.old",
             tmp_path / f".r.json.{host}-{dead}-89abcdef.tmp.json"]
    kept = [tmp_path / f".ds.{host}-{os.getpid()}-0123abcd.tmp",  # a live writer (this one)
            tmp_path / f".ds.otherhost-{dead}-0123abcd.tmp",  # another host's: its pid means nothing here
            tmp_path / f".ds2.{host}-{dead}-0123abcd.tmp"]  # another target's
    for p in stale + kept:
        if "json" in p.name:
            p.write_text("torn")
        else:
            p.mkdir()
            (p / "big.npy").write_bytes(b"0" * 100)
    with atomic_dir(tmp_path / "ds") as tmp:
        assert tmp.name.startswith(f".ds.{host}-{os.getpid()}-")  # the writer's pid is in its temporary's name
        _meta(tmp)
    atomic_write_json(tmp_path / "r.json", {})
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["ds", "r.json"] + [p.name for p in kept])


def test_a_full_disk_during_a_checkpoint_is_one_line_and_keeps_the_previous(tmp_path, monkeypatch):
    import torch

    from trm import checkpoint as ck

    run = tmp_path / "run"
    ck.save_checkpoint(run, {"w": torch.zeros(2)}, {"model": {}}, {"step": 1})

    def full(*a, **k):
        raise RuntimeError("[enforce fail at inline_container.cc:626] . unexpected pos 64 vs 0: file write failed")
    monkeypatch.setattr(ck.torch, "save", full)
    with pytest.raises(ck.CheckpointError, match=r"cannot write the checkpoint .* MiB free .* previous checkpoint"):
        ck.save_checkpoint(run, {"w": torch.ones(2)}, {"model": {}}, {"step": 2})
    assert torch.equal(ck.load_weights(ck.resolve_checkpoint(run))["w"], torch.zeros(2))
