"""Reference checkpoints in and out: every golden folder (what the official code computes) is reproduced through
the import path, a trm run survives export + import unchanged, and bad input is a one-line error that writes
nothing."""

import io
import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from trm import reference as ref
from trm.checkpoint import load_model, save_checkpoint
from trm.model import TRM, ModelConfig

GOLDEN = Path(os.environ.get("TRM_GOLDEN", Path(__file__).resolve().parents[2] / "shared" / "golden"))
FOLDERS = sorted(json.loads((GOLDEN / "index.json").read_text())) if (GOLDEN / "index.json").is_file() else []
needs_golden = pytest.mark.skipif(not FOLDERS, reason=f"golden reference outputs not found at {GOLDEN}")
KINDS = {"trm_mlp": "trm", "trm_att": "trm", "trm_att_learned": "trm", "trm_mlp_bf16": "trm", "hrm": "hrm",
         "trm_singlez": "trm_singlez", "trm_multiz": "trm_hier6", "transformer": "transformers_baseline"}


def check(folder: Path, golden: Path | None = None):
    imp = ref.read_reference(folder)
    model = TRM(imp.model_cfg)
    model.load_state_dict(imp.weights)
    g = load_file(golden or folder / "golden.safetensors")
    return imp, ref.check_against(model, g, imp.kind, q_continue_loss=imp.train["q_continue_loss"])


@needs_golden
def test_golden_lists_every_architecture():
    assert set(FOLDERS) == set(KINDS)


@needs_golden
@pytest.mark.parametrize("name", FOLDERS)
def test_every_reference_model_is_reproduced(name):
    imp, r = check(GOLDEN / name)
    assert imp.kind == KINDS[name] and imp.ignored == []
    index = json.loads((GOLDEN / "index.json").read_text())[name]
    assert sum(v.numel() for v in TRM(imp.model_cfg).parameters()) == index["trainable_params"]
    assert r["ok"], r
    assert len(r["steps"]) == imp.model_cfg.N_sup and all(s["logits"] <= s["tol"] for s in r["steps"])
    assert set(r["grads"]) == {n for n, p in TRM(imp.model_cfg).named_parameters()}  # every gradient compared
    assert max(r["grads"].values()) <= r["tol"]["grad_rel"]
    assert imp.dtype == ("bf16" if name.endswith("bf16") else "fp32")


@needs_golden
def test_a_wrong_model_fails_the_check(tmp_path):
    # the check can fail: one weight nudged, or HRM without its continue loss, is caught
    imp = ref.read_reference(GOLDEN / "trm_att")
    model = TRM(imp.model_cfg)
    weights = dict(imp.weights)
    weights["net.1.mlp.down.weight"] = weights["net.1.mlp.down.weight"] * 1.001
    model.load_state_dict(weights)
    r = ref.check_against(model, load_file(GOLDEN / "trm_att" / "golden.safetensors"), "trm", q_continue_loss=False)
    assert not r["ok"] and r["steps"][0]["logits"] > r["steps"][0]["tol"]
    imp = ref.read_reference(GOLDEN / "hrm")
    model = TRM(imp.model_cfg)
    model.load_state_dict(imp.weights)
    r = ref.check_against(model, load_file(GOLDEN / "hrm" / "golden.safetensors"), "hrm", q_continue_loss=False)
    assert not r["ok"] and r["losses"]["loss"] > r["tol"]["loss_rel"]


@needs_golden
def test_prefix_free_keys_and_yaml_configs_are_read(tmp_path):
    state = torch.load(GOLDEN / "trm_att" / "step_0", weights_only=True)
    d = tmp_path / "plain"
    d.mkdir()
    torch.save({ref.strip_prefix(k): v for k, v in state.items()}, d / "step_7")
    arch = json.loads((GOLDEN / "trm_att" / "all_config.yaml").read_text())["arch"]
    yaml = pytest.importorskip("yaml")
    (d / "all_config.yaml").write_text(yaml.safe_dump({"arch": arch, "lr": 1e-4, "global_batch_size": 768}))
    _, r = check(d, GOLDEN / "trm_att" / "golden.safetensors")
    assert r["ok"]
    assert ref.read_reference(d).train["batch_size"] == 768


def tiny_run(tmp_path, **kw) -> Path:
    cfg = ModelConfig(**{**dict(vocab_size=11, seq_len=81, num_puzzle_ids=3, d=32, heads=4, L=2, n=2, T=2, N_sup=3,
                                puzzle_emb_len=16, puzzle_emb_dim=32, mixer="attention", pos="rope"), **kw})
    torch.manual_seed(0)
    model = TRM(cfg)
    with torch.no_grad():
        model.puzzle_emb.weight.normal_()
        model.q_head.weight.normal_(std=0.1)
    from dataclasses import asdict
    run = tmp_path / "run"
    save_checkpoint(run, model.state_dict(), {"model": asdict(cfg), "train": {"batch_size": 8}, "step": 5})
    return run


@pytest.mark.parametrize("kw", [dict(), dict(mixer="mlp", pos="none"), dict(pos="learned"),
                                dict(networks=2, grad="one_step", puzzle_emb_len=1), dict(recursion="singlez"),
                                dict(recursion="multiz"), dict(recursion="none", T=1, n=1, puzzle_emb_len=1)])
def test_export_then_import_gives_the_same_model(tmp_path, kw):
    run = tiny_run(tmp_path, **kw)
    path = ref.export_reference(run, tmp_path / "ref")
    assert path.name == "step_5"
    state = torch.load(path, weights_only=True)
    assert all(k.startswith("_orig_mod.model.inner.") for k in state)
    back, _ = ref.import_reference(tmp_path / "ref", tmp_path / "back")
    a, _ = load_model(run)
    b, cfg = load_model(back)
    assert cfg["model"] == json.loads((run / "checkpoint" / "config.json").read_text())["model"]
    inputs, ids = torch.randint(1, 11, (2, 81)), torch.tensor([0, 2])
    ca, cb = a.initial_carry(2), b.initial_carry(2)
    for _ in range(2):
        ca, oa = a(ca, inputs, ids)
        cb, ob = b(cb, inputs, ids)
        assert torch.equal(oa.logits, ob.logits) and torch.equal(oa.q_halt, ob.q_halt)
    assert cfg["data_meta"]["task"] == "sudoku"


def test_variants_the_reference_lacks_are_refused(tmp_path):
    run = tiny_run(tmp_path, networks=2)  # two networks with TRM's gradient: no reference file computes it
    with pytest.raises(ref.ReferenceError, match="no model for"):
        ref.export_reference(run, tmp_path / "ref")
    assert not (tmp_path / "ref").exists()
    (tmp_path / "glu").mkdir()
    run = tiny_run(tmp_path / "glu", glu="sigmoid_norm")  # "Speed is Confidence"'s unit: not in the reference
    with pytest.raises(ref.ReferenceError, match="only the standard SwiGLU"):
        ref.export_reference(run, tmp_path / "ref")
    assert not (tmp_path / "ref").exists()


@needs_golden
@pytest.mark.parametrize("case", ["missing", "truncated", "not_torch", "unknown_arch", "missing_key", "extra_key",
                                  "bad_shape", "no_config", "not_a_state_dict"])
def test_bad_reference_input_is_one_line_and_writes_nothing(tmp_path, case):
    src = GOLDEN / "trm_att"
    d = tmp_path / "ref"
    d.mkdir()
    state = torch.load(src / "step_0", weights_only=True)
    cfg = json.loads((src / "all_config.yaml").read_text())
    if case == "missing_key":
        state.pop("_orig_mod.model.inner.lm_head.weight")
    if case == "extra_key":
        state["_orig_mod.model.inner.L_level.layers.2.mlp.down_proj.weight"] = torch.zeros(64, 256)
    if case == "bad_shape":
        state["_orig_mod.model.inner.lm_head.weight"] = torch.zeros(12, 64)
    if case == "unknown_arch":
        cfg["arch"]["name"] = "recursive_reasoning.trm_fancy@Model"
    buf = io.BytesIO()
    torch.save(state if case != "not_a_state_dict" else [1, 2, 3], buf)
    data = buf.getvalue()
    if case == "truncated":
        data = data[: len(data) // 2]
    if case == "not_torch":
        data = b"hello, not a checkpoint"
    if case != "missing":
        (d / "step_0").write_bytes(data)
    if case != "no_config":
        (d / "all_config.yaml").write_text(json.dumps(cfg))
    with pytest.raises(ref.ReferenceError) as e:
        ref.import_reference(d, tmp_path / "out")
    msg = str(e.value)
    assert "\n" not in msg and len(msg) < 400
    want = {"missing": "no reference checkpoint", "truncated": "not a readable", "not_torch": "not a readable",
            "unknown_arch": "trm_fancy", "missing_key": "lm_head", "extra_key": "layers.2", "bad_shape": "shape",
            "no_config": "all_config.yaml", "not_a_state_dict": "state dict"}[case]
    assert want in msg
    assert not (tmp_path / "out").exists()


# --- the commands -------------------------------------------------------------------------------------------
@needs_golden
@pytest.mark.parametrize("name", FOLDERS)
def test_trm_import_check_passes_and_the_run_is_usable(cli, tmp_path, name):
    code, out, err = cli("import", GOLDEN / name, "--out", tmp_path / "run", "--check",
                         GOLDEN / name / "golden.safetensors")
    assert code == 0, err
    assert "check: within tolerance" in out and out.count("e-0") >= 4  # a line per supervision step
    model, cfg = load_model(tmp_path / "run")
    assert cfg["imported_from"]["kind"] == KINDS[name] and cfg["data_meta"]["task"] == "sudoku"
    code, out, err = cli("export", tmp_path / "run", "--out", tmp_path / "ref")
    assert code == 0 and (tmp_path / "ref" / "step_0").is_file(), err
    code, out, err = cli("import", tmp_path / "ref", "--out", tmp_path / "again", "--check",
                         GOLDEN / name / "golden.safetensors")
    assert code == 0 and "within tolerance" in out, err


@needs_golden
def test_trm_import_check_fails_beyond_tolerance(cli, tmp_path):
    from safetensors.torch import save_file
    g = load_file(GOLDEN / "trm_att" / "golden.safetensors")
    g["eval_logits"] = g["eval_logits"].clone()
    g["eval_logits"][2] += 0.01  # the third step's logits off by 1e-2: beyond attention's 4e-4 there
    save_file(g, tmp_path / "off.safetensors")
    code, out, err = cli("import", GOLDEN / "trm_att", "--out", tmp_path / "run", "--check",
                         tmp_path / "off.safetensors")
    assert code == 1 and "BEYOND TOLERANCE" in out


def test_trm_import_and_export_refuse_bad_input_in_one_line(cli, tmp_path):
    (tmp_path / "empty").mkdir()
    code, _, err = cli("import", tmp_path / "empty", "--out", tmp_path / "run")
    assert code == 2 and err.count("\n") == 1 and "no reference checkpoint" in err
    assert not (tmp_path / "run").exists()
    code, _, err = cli("import", tmp_path / "empty", "--out", tmp_path / "run", "--check", tmp_path / "nope")
    assert code == 2 and "--check" in err and not (tmp_path / "run").exists()
    code, _, err = cli("export", tmp_path / "empty", "--out", tmp_path / "ref")
    assert code == 2 and err.count("\n") == 1 and not (tmp_path / "ref").exists()
