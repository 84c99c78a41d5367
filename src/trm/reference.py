"""Checkpoints of the official TRM / HRM code in and out (`trm import`, `trm export`, `trm import --check`).

The reference saves `torch.save(model.state_dict())` of `torch.compile(ACTLossHead(model))` as `step_N`, so
keys read `_orig_mod.model.inner.<name>`, with `all_config.yaml` (YAML or JSON) beside it whose `arch` block
names the model (`recursive_reasoning.trm@TinyRecursiveReasoningModel_ACTV1`, ...). Its names are HRM's: the
answer is `z_H` (init `H_init`), the latent `z_L` (`L_init`), T `H_cycles`, n `L_cycles`; TRM's one network is
`L_level`, HRM's second `H_level`. This module maps those names and configs to trm's and back; nothing here
runs the reference code.
"""

from __future__ import annotations

import io
import json
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from .atomic import atomic_write_bytes, atomic_write_json
from .model import TRM, ModelConfig

PREFIXES = ("_orig_mod.", "model.", "inner.")
EXPORT_PREFIX = "_orig_mod.model.inner."

# the reference's model files, by the module part of arch.name, and the trm flags each maps to
ARCHS = {
    "trm": dict(recursion="trm"),
    "trm_singlez": dict(recursion="singlez"),
    "trm_hier6": dict(recursion="multiz"),
    "hrm": dict(recursion="trm", networks=2, grad="one_step"),
    "transformers_baseline": dict(recursion="none"),
}
ARCH_NAMES = {"trm": "recursive_reasoning.trm@TinyRecursiveReasoningModel_ACTV1",
              "trm_singlez": "recursive_reasoning.trm_singlez@TinyRecursiveReasoningModel_ACTV1",
              "trm_hier6": "recursive_reasoning.trm_hier6@TinyRecursiveReasoningModel_ACTV1",
              "hrm": "recursive_reasoning.hrm@HierarchicalReasoningModel_ACTV1",
              "transformers_baseline": "recursive_reasoning.transformers_baseline@Model_ACTV2"}
# arch fields model_config or read_reference reads (any other is reported as not used)
READ_FIELDS = {"name", "loss", "seq_len", "vocab_size", "num_puzzle_identifiers", "hidden_size", "num_heads",
               "expansion", "halt_max_steps", "H_cycles", "L_cycles", "H_layers", "L_layers", "mlp_t",
               "puzzle_emb_ndim", "puzzle_emb_len", "pos_encodings", "rope_theta", "rms_norm_eps",
               "halt_exploration_prob", "no_ACT_continue", "forward_dtype"}


class ReferenceError(ValueError):
    """A reference checkpoint or config that cannot be read or mapped (message is one line)."""


@dataclass
class Imported:
    model_cfg: ModelConfig
    weights: dict[str, torch.Tensor]       # trm names, float32
    kind: str                              # key of ARCHS
    arch: dict                             # the reference's arch block as read
    train: dict = field(default_factory=dict)   # training settings the arch block implies (q_continue_loss, ...)
    dtype: str = "fp32"                    # the reference's forward_dtype, as trm's --dtype
    ignored: list[str] = field(default_factory=list)


# --- reading ------------------------------------------------------------------------------------------------
def find_checkpoint(ref: Path) -> Path:
    """A reference checkpoint file, or the newest `step_N` in a folder."""
    if ref.is_file():
        return ref
    if not ref.exists():
        raise ReferenceError(f"{ref} does not exist")
    steps = sorted((p for p in ref.iterdir() if re.fullmatch(r"step_\d+", p.name) and p.is_file()),
                   key=lambda p: int(p.name.split("_")[1]))
    if not steps:
        raise ReferenceError(f"{ref} holds no reference checkpoint (a file named step_N)")
    return steps[-1]


def read_config(path: Path) -> dict:
    """all_config.yaml: YAML as the reference writes it (JSON, as in golden/, is YAML too)."""
    import yaml
    if not path.is_file():
        raise ReferenceError(f"{path} is missing (the reference writes all_config.yaml beside its checkpoints)")
    try:
        cfg = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ReferenceError(f"{path} is not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(cfg, dict) or not isinstance(cfg.get("arch"), dict):
        raise ReferenceError(f"{path} has no arch block")
    return cfg


def arch_kind(name: str) -> str:
    module = str(name).split("@")[0].split(".")[-1]
    if module not in ARCHS:
        raise ReferenceError(f"arch '{name}' is not a model trm knows (known: {', '.join(ARCH_NAMES.values())})")
    return module


def model_config(arch: dict) -> tuple[ModelConfig, str, list[str]]:
    """trm's ModelConfig for a reference arch block, the arch kind, and the fields not used."""
    kind = arch_kind(arch.get("name", ""))
    need = ["seq_len", "vocab_size", "num_puzzle_identifiers", "hidden_size", "num_heads", "expansion",
            "halt_max_steps", "H_cycles"]
    missing = [k for k in need if k not in arch]
    if missing:
        raise ReferenceError(f"arch block lacks {', '.join(missing)}")
    d = int(arch["hidden_size"])
    if kind == "transformers_baseline":
        layers = int(arch.get("H_layers", 0))
    elif kind == "hrm":
        layers = int(arch.get("L_layers", 0))
        if int(arch.get("H_layers", layers)) != layers:
            raise ReferenceError(f"HRM with H_layers {arch['H_layers']} != L_layers {layers}: trm's two networks "
                                 f"have the same depth")
    else:
        layers = int(arch.get("L_layers", 0))
    emb_dim = int(arch.get("puzzle_emb_ndim", 0))
    # TRM files reserve puzzle_emb_len tokens (16; 0 means ceil(dim/d)); HRM and the baseline always ceil(dim/d)
    emb_len = int(arch.get("puzzle_emb_len", 0)) if kind not in ("hrm", "transformers_baseline") else 0
    emb_len = emb_len or (math.ceil(emb_dim / d) if emb_dim else 0)
    pos = str(arch.get("pos_encodings", "rope"))
    kw = dict(ARCHS[kind])
    if kind == "transformers_baseline":
        n = 1
    else:
        n = int(arch.get("L_cycles", 0))
    cfg = ModelConfig(vocab_size=int(arch["vocab_size"]), seq_len=int(arch["seq_len"]),
                      num_puzzle_ids=max(1, int(arch["num_puzzle_identifiers"])), d=d, L=layers,
                      heads=int(arch["num_heads"]), expansion=float(arch["expansion"]),
                      mixer="mlp" if arch.get("mlp_t") else "attention",
                      pos=pos if pos in ("rope", "learned") else "none", n=n, T=int(arch["H_cycles"]),
                      N_sup=int(arch["halt_max_steps"]), puzzle_emb_len=emb_len, puzzle_emb_dim=emb_dim,
                      rope_theta=float(arch.get("rope_theta", 10000.0)),
                      norm_eps=float(arch.get("rms_norm_eps", 1e-5)), **kw)
    try:
        cfg.validate()
    except ValueError as e:
        raise ReferenceError(f"arch block does not give a valid model: {e}") from None
    return cfg, kind, sorted(set(arch) - READ_FIELDS)


def _trm_name(key: str, kind: str) -> str:
    """One reference key (prefixes stripped) as trm names it."""
    m = re.fullmatch(r"(H|L)_level\.layers\.(\d+)\.(.+)", key)
    if m:
        level, i, rest = m.groups()
        net = "net" if level == "L" or kind == "transformers_baseline" else "net_y"
        rest = (rest.replace("self_attn.qkv_proj", "mixer.qkv").replace("self_attn.o_proj", "mixer.out")
                .replace("mlp_t.gate_up_proj", "mixer.gate_up").replace("mlp_t.down_proj", "mixer.down")
                .replace("mlp.gate_up_proj", "mlp.gate_up").replace("mlp.down_proj", "mlp.down"))
        return f"{net}.{i}.{rest}"
    fixed = {"embed_tokens.embedding_weight": "embed_tokens.weight", "embed_pos.embedding_weight": "embed_pos",
             "puzzle_emb.weights": "puzzle_emb.weight", "lm_head.weight": "lm_head.weight",
             "q_head.weight": "q_head.weight", "q_head.bias": "q_head.bias"}
    if key in fixed:
        return fixed[key]
    if key == "H_init":
        return "z_init" if kind == "transformers_baseline" else "y_init"
    if key == "L_init":
        return "z_init"
    m = re.fullmatch(r"L(\d+)_init", key)
    if m:
        return f"z_init.{int(m.group(1)) - 1}"  # multiz: row i-1 of the (n, d) table
    return ""


def strip_prefix(key: str) -> str:
    for p in PREFIXES:
        if key.startswith(p):
            key = key[len(p):]
    return key


def map_weights(state: dict[str, torch.Tensor], cfg: ModelConfig, kind: str, source: str) -> dict[str, torch.Tensor]:
    """Reference state dict -> trm state dict (float32), checked against the model the config builds."""
    want = {k: v for k, v in TRM(cfg).state_dict().items()}
    out, rows, unknown, source_key = {}, {}, [], {}
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise ReferenceError(f"{source}: entry {key} is not a tensor (not a model state dict)")
        name = _trm_name(strip_prefix(key), kind)
        if name.startswith("z_init.") and cfg.recursion == "multiz":
            rows[int(name.split(".")[1])] = value
            continue
        if not name:
            if re.search(r"rotary|cos_cached|sin_cached", key):  # RoPE tables: recomputed, not weights
                continue
            unknown.append(key)
            continue
        out[name] = value.detach().to(torch.float32)
        source_key[name] = key
    if unknown:
        raise ReferenceError(f"{source}: key {unknown[0]} is not part of a {kind} model"
                             + (f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""))
    if rows:
        if sorted(rows) != list(range(cfg.n)):
            raise ReferenceError(f"{source}: multi-z needs L1_init..L{cfg.n}_init, found {len(rows)} of them")
        out["z_init"] = torch.stack([rows[i].to(torch.float32) for i in range(cfg.n)])
    missing = [k for k in want if k not in out]
    if missing:
        raise ReferenceError(f"{source}: no weights for {missing[0]}"
                             + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
                             + f" of the {kind} model its config describes")
    for k, v in out.items():
        key = source_key.get(k, k)
        if k not in want:
            raise ReferenceError(f"{source}: {key} does not belong to the model its config describes")
        if tuple(v.shape) != tuple(want[k].shape):
            raise ReferenceError(f"{source}: {key} has shape {tuple(v.shape)}, the config gives {tuple(want[k].shape)}")
    return out


def load_state(path: Path) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch.load raises many kinds on a truncated or foreign file: one line
        msg = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
        raise ReferenceError(f"{path} is not a readable torch checkpoint ({msg})") from None
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    if not isinstance(state, dict) or not state:
        raise ReferenceError(f"{path} does not hold a state dict")
    return state


def read_reference(ref: str | Path) -> Imported:
    """Read a reference checkpoint (folder or file) and its all_config.yaml into trm's config and names."""
    ref = Path(ref)
    ckpt = find_checkpoint(ref)
    cfg_path = (ref if ref.is_dir() else ref.parent) / "all_config.yaml"
    full = read_config(cfg_path)
    arch = full["arch"]
    mcfg, kind, extra = model_config(arch)
    weights = map_weights(load_state(ckpt), mcfg, kind, str(ckpt))
    q_cont = kind == "hrm" or not arch.get("no_ACT_continue", True)
    train = {"q_continue_loss": bool(q_cont), "halt_explore_prob": float(arch.get("halt_exploration_prob", 0.1))}
    for ours, theirs in (("lr", "lr"), ("weight_decay", "weight_decay"), ("puzzle_emb_lr", "puzzle_emb_lr"),
                         ("puzzle_emb_weight_decay", "puzzle_emb_weight_decay"), ("batch_size", "global_batch_size"),
                         ("warmup_steps", "lr_warmup_steps"), ("lr_min_ratio", "lr_min_ratio"), ("data", "data_path"),
                         ("beta1", "beta1"), ("beta2", "beta2")):
        if theirs in full and not isinstance(full[theirs], (dict, list)):
            train[ours] = full[theirs]
    dtype = "bf16" if str(arch.get("forward_dtype", "float32")) in ("bfloat16", "bf16") else "fp32"
    return Imported(model_cfg=mcfg, weights=weights, kind=kind, arch=arch, train=train, dtype=dtype, ignored=extra)


def task_meta(cfg: ModelConfig) -> dict:
    """What task a reference model was trained on, from its sequence and vocabulary (the reference's builders
    use trm's token conventions: Sudoku PAD 0 blank 1 digits 2-10; Maze PAD 0 then '# SGo'; ARC PAD, EOS,
    colours)."""
    meta = {"seq_len": cfg.seq_len, "vocab_size": cfg.vocab_size, "num_puzzle_ids": cfg.num_puzzle_ids}
    side = math.isqrt(cfg.seq_len)
    if cfg.vocab_size == 11 and cfg.seq_len == 81:
        meta.update(task="sudoku", size=9)
    elif cfg.vocab_size == 6 and side * side == cfg.seq_len:
        meta.update(task="maze", size=side)
    elif cfg.vocab_size == 12 and cfg.seq_len == 900:
        meta.update(task="arc")
    else:
        meta.update(task="unknown")
    return meta


# --- writing a trm run ----------------------------------------------------------------------------------------
def import_reference(ref: str | Path, out: str | Path) -> tuple[Path, Imported]:
    """Write a trm run directory (checkpoint + config.json) for a reference checkpoint."""
    from . import checkpoint as ckpt_io
    from .train import TrainConfig
    imp = read_reference(ref)
    model = TRM(imp.model_cfg)
    model.load_state_dict(imp.weights, strict=True)  # shapes and names were checked by map_weights
    known = {f for f in TrainConfig.__dataclass_fields__}
    train = asdict(TrainConfig(**{k: v for k, v in imp.train.items() if k in known}))
    train.update(dtype=imp.dtype, out=str(out))
    config = {"model": asdict(imp.model_cfg), "train": train, "preset": "", "data_meta": task_meta(imp.model_cfg),
              "step": 0, "imported_from": {"path": str(Path(ref).resolve()), "arch": imp.arch, "kind": imp.kind}}
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ReferenceError(f"{out} exists and is not an empty folder: choose a new --out")
    ckpt_io.save_checkpoint(out, model.state_dict(), config)
    atomic_write_json(out / "config.json", config)
    return out, imp


# --- writing the reference's format ---------------------------------------------------------------------------
def reference_kind(cfg: ModelConfig) -> str:
    """Which reference model file computes what this config computes (or a one-line error)."""
    r, nets, g = cfg.recursion, cfg.networks, cfg.grad
    if r == "trm" and nets == 1 and g == "last":
        return "trm"
    if r == "trm" and nets == 2 and g == "one_step":
        return "hrm"
    if r == "singlez" and g == "last":
        return "trm_singlez"
    if r == "multiz" and nets == 1 and g == "last":
        return "trm_hier6"
    if r == "none" and g == "last":
        return "transformers_baseline"
    raise ReferenceError(f"the reference code has no model for recursion {r}, networks {nets}, grad {g}")


def reference_state(weights: dict[str, torch.Tensor], cfg: ModelConfig, kind: str) -> dict[str, torch.Tensor]:
    """trm state dict -> the reference's keys (with the torch.compile + ACTLossHead prefix)."""
    inverse: dict[str, str] = {}
    ref_keys = ["H_init", "L_init", "embed_tokens.embedding_weight", "embed_pos.embedding_weight",
                "puzzle_emb.weights", "lm_head.weight", "q_head.weight", "q_head.bias"]
    ref_keys += [f"L{i + 1}_init" for i in range(cfg.n)] if kind == "trm_hier6" else []
    for level in ("L", "H"):
        for i in range(cfg.L):
            for part in ("self_attn.qkv_proj", "self_attn.o_proj", "mlp_t.gate_up_proj", "mlp_t.down_proj",
                         "mlp.gate_up_proj", "mlp.down_proj"):
                ref_keys.append(f"{level}_level.layers.{i}.{part}.weight")
    for rk in ref_keys:
        name = _trm_name(rk, kind)
        if name and name not in inverse.values():
            inverse[rk] = name
    out = {}
    for rk, name in inverse.items():
        if name.startswith("z_init.") and kind == "trm_hier6":
            out[EXPORT_PREFIX + rk] = weights["z_init"][int(name.split(".")[1])].clone()
        elif name in weights and not (kind == "trm_hier6" and name == "z_init"):
            out[EXPORT_PREFIX + rk] = weights[name].detach().clone()
    used = {inverse[strip_prefix(k)] for k in out} | ({"z_init"} if kind == "trm_hier6" else set())
    left = [k for k in weights if k not in used and not k.startswith("z_init.")]
    if left:
        raise ReferenceError(f"{left[0]} has no place in the reference's {kind} model")
    return out


def reference_arch(cfg: ModelConfig, kind: str, dtype: str = "fp32") -> dict:
    arch = {"name": ARCH_NAMES[kind], "loss": {"name": "losses@ACTLossHead", "loss_type": "stablemax_cross_entropy"},
            "seq_len": cfg.seq_len, "vocab_size": cfg.vocab_size, "num_puzzle_identifiers": cfg.num_puzzle_ids,
            "hidden_size": cfg.d, "num_heads": cfg.heads, "expansion": cfg.expansion, "rms_norm_eps": cfg.norm_eps,
            "rope_theta": cfg.rope_theta, "halt_max_steps": cfg.N_sup, "H_cycles": cfg.T,
            "pos_encodings": cfg.pos, "puzzle_emb_ndim": cfg.puzzle_emb_dim,
            "forward_dtype": "bfloat16" if dtype == "bf16" else "float32"}
    if kind == "transformers_baseline":
        arch["H_layers"] = cfg.L
    elif kind == "hrm":
        arch.update(L_cycles=cfg.n, H_layers=cfg.L, L_layers=cfg.L)
    else:
        arch.update(L_cycles=cfg.n, H_layers=0, L_layers=cfg.L, mlp_t=cfg.mixer == "mlp",
                    puzzle_emb_len=cfg.puzzle_emb_len, no_ACT_continue=True)
    if kind in ("hrm", "transformers_baseline") and cfg.prefix_len != math.ceil(cfg.puzzle_emb_dim / cfg.d):
        raise ReferenceError(f"the reference's {kind} reserves ceil(puzzle_emb_dim / d) prefix tokens, "
                             f"this model {cfg.prefix_len}")
    if cfg.layer_mixers != [cfg.mixer] * cfg.L or cfg.mixer == "ssd":
        raise ReferenceError("the reference code has neither an SSD mixer nor per-layer mixers (layer_pattern)")
    if cfg.glu != "swiglu":
        raise ReferenceError(f"the reference code has only the standard SwiGLU (this model: glu {cfg.glu})")
    if cfg.mixer == "mlp" and kind != "trm":
        raise ReferenceError(f"the reference's {kind} has no MLP-T mixer")
    return arch


def export_reference(run: str | Path, out: str | Path) -> Path:
    """Write a trm checkpoint in the reference's format: out/step_N and out/all_config.yaml (JSON)."""
    from . import checkpoint as ckpt_io
    ckpt = ckpt_io.resolve_checkpoint(run)
    cfg_dict = ckpt_io.load_config(ckpt)
    mcfg = ModelConfig(**cfg_dict["model"])
    kind = reference_kind(mcfg)
    train = cfg_dict.get("train", {})
    arch = reference_arch(mcfg, kind, train.get("dtype", "fp32"))
    arch["halt_exploration_prob"] = float(train.get("halt_explore_prob", 0.1))
    if kind != "hrm":
        arch["no_ACT_continue"] = not train.get("q_continue_loss", False)
    state = reference_state(ckpt_io.load_weights(ckpt), mcfg, kind)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ReferenceError(f"{out} is a file, not a folder")
    out.mkdir(parents=True, exist_ok=True)
    step = int(cfg_dict.get("step", 0))
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(out / f"step_{step}", buf.getvalue())
    top = {"arch": arch, "global_batch_size": train.get("batch_size"), "lr": train.get("lr"),
           "weight_decay": train.get("weight_decay"), "puzzle_emb_lr": train.get("puzzle_emb_lr"),
           "puzzle_emb_weight_decay": train.get("puzzle_emb_weight_decay"), "beta1": train.get("beta1"),
           "beta2": train.get("beta2"), "lr_warmup_steps": train.get("warmup_steps"),
           "lr_min_ratio": train.get("lr_min_ratio"), "data_path": train.get("data"),
           "exported_by": "trm export", "exported_from": str(Path(run).resolve())}
    atomic_write_json(out / "all_config.yaml", {k: v for k, v in top.items() if v is not None})
    return out / f"step_{step}"


# --- checking against the reference's own outputs ---------------------------------------------------------------
def tolerances(cfg: ModelConfig) -> dict:
    """How close trm must come to stored reference outputs (float32 against float32). A recursion at random
    init amplifies float32 rounding step by step (two float32 implementations, or either against float64,
    drift apart alike): MLP-T about tenfold a step, so its logits are held to 1e-4 at step 1, tenfold more
    each step; attention models about twofold (multi-z, the deepest, reaches 2e-4 at step 4)."""
    growth = 10.0 if cfg.mixer == "mlp" else 2.0
    return {"logits": [1e-4 * growth ** s for s in range(cfg.N_sup)], "loss_rel": 1e-5, "grad_rel": 1e-4}


def check_against(model: TRM, golden: dict[str, torch.Tensor], kind: str, *, q_continue_loss: bool) -> dict:
    """Run the stored batch through `model` as the reference did: every supervision step in eval mode from
    the initial carry, and one training step's loss and gradients. Returns per-step and per-parameter
    differences, the tolerances, and `ok`."""
    from .losses import IGNORE, act_loss, q_continue_target
    cfg = model.cfg
    inputs, ids = golden["inputs"].long(), golden["puzzle_identifiers"].long()
    labels = golden["labels"].long()
    labels = torch.where(labels < 0, IGNORE, labels)  # the reference marks unscored tokens -100, trm 0
    B, S = inputs.shape[0], golden["eval_logits"].shape[0]
    tol = tolerances(cfg)
    model.eval()
    steps = []
    with torch.no_grad():
        carry = model.initial_carry(B)
        for s in range(S):
            carry, out = model(carry, inputs, ids)
            steps.append({"step": s + 1,
                          "logits": float((out.logits.float() - golden["eval_logits"][s]).abs().max()),
                          "q_halt": float((out.q_halt - golden["eval_q_halt"][s]).abs().max()),
                          "q_continue": float((out.q_continue - golden["eval_q_continue"][s]).abs().max()),
                          "tol": tol["logits"][min(s, len(tol["logits"]) - 1)]})
    model.train()
    model.zero_grad(set_to_none=True)
    carry = model.initial_carry(B)
    new_carry, out = model(carry, inputs, ids)
    target = None
    if q_continue_loss:  # HRM: the target is the next step's Q, run without gradients (as the trainer does)
        with torch.no_grad():
            _, nxt = model(new_carry, inputs, ids)
        target = q_continue_target(nxt.q_halt, nxt.q_continue, torch.full((B,), 1 >= cfg.N_sup))
    parts = act_loss(out.logits, labels, out.q_halt, out.q_continue, loss="stablemax", q_continue_target=target)
    parts.total.backward()
    loss, lm, q_halt = parts.total.detach(), parts.lm.detach(), parts.q_halt.detach()
    rel = lambda a, b: abs(float(a) - float(b)) / max(abs(float(b)), 1e-12)  # noqa: E731
    losses = {"loss": rel(loss, golden["train_loss"]), "lm_loss": rel(lm, golden["train_lm_loss"]),
              "q_halt_loss": rel(q_halt, golden["train_q_halt_loss"])}
    grads, names = {}, dict(model.named_parameters())
    for key, want in golden.items():
        if not key.startswith("grad."):
            continue
        name = _trm_name(strip_prefix(key[len("grad."):]), kind)
        p = names.get(name)
        if p is None:
            raise ReferenceError(f"the golden file has a gradient for {key}, which the model does not have")
        got = p.grad if p.grad is not None else torch.zeros_like(p)
        grads[name] = float((got - want).abs().max() / want.abs().max().clamp_min(1e-30))
    no_ref = [n for n, p in names.items() if p.requires_grad and n not in grads and p.grad is not None
              and p.grad.abs().max() > 0]
    if no_ref:
        raise ReferenceError(f"{no_ref[0]} has a gradient the golden file does not list")
    model.zero_grad(set_to_none=True)
    model.eval()
    ok = (all(s["logits"] <= s["tol"] and s["q_halt"] <= s["tol"] and s["q_continue"] <= s["tol"] for s in steps)
          and all(v <= tol["loss_rel"] for v in losses.values()) and all(v <= tol["grad_rel"] for v in grads.values()))
    return {"steps": steps, "losses": losses, "grads": grads, "tol": tol, "ok": ok}
