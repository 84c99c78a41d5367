"""The faster-training options of the one loop: the staggered carry, Muon, the depth curriculum, supervision
step weights, continuing a finished run, and the training-time clock."""

import json

import pytest
import torch

from trm.carry import ActCarry, ExampleStream
from trm.data.format import load_dataset
from trm.losses import act_loss
from trm.model import TRM, ModelConfig
from trm.optim import Chain, build_optimizer, muon_split
from trm.train import Trainer, TrainConfig, parse_depth_curriculum, parse_sup_curriculum

MODEL = dict(d=32, heads=4, mixer="mlp", pos="none", n=2, T=2, N_sup=4, puzzle_emb_len=1, puzzle_emb_dim=32)


def trainer(data, out, model=None, resume="", overrides=None, **kw):
    cfg = dict(data=str(data), out=str(out), batch_size=16, steps=12, lr=1e-3, warmup_steps=3, optimizer="adamw",
               weight_decay=0.1, loss="softmax", ema=0.9, eval_every=0, checkpoint_every=5, log_every=2,
               dtype="fp32", halt_explore_prob=0.0)
    cfg.update(kw)
    if resume:
        return Trainer(ModelConfig(), TrainConfig(), resume=str(resume), overrides=overrides or {}, progress=False)
    return Trainer(ModelConfig(**{**MODEL, **(model or {})}), TrainConfig(**cfg), progress=False)


# --- the staggered carry -----------------------------------------------------------------------------------
def test_staggered_slots_start_spread_and_refill_a_rotating_share(sort_data, tmp_path):
    def refills(stagger):
        t = trainer(sort_data, tmp_path / f"run{stagger}", stagger=stagger)
        t.act.refill(0)
        first = t.act.steps.tolist()
        taken = []
        for _ in range(8):  # Q never halts (bias -5): slots halt only at N_sup = 4
            pos = t.act.stream.state()[1]
            t.train_step()
            taken.append(t.act.stream.state()[1] - pos)
        return first, taken, t.act.inputs.clone()
    first, taken, _ = refills(True)
    assert first == [g * 4 // 16 for g in range(16)]  # 0,0,0,0,1,1,1,1,...,3
    assert taken == [0, 4, 4, 4, 4, 4, 4, 4]  # a quarter of the slots each step
    first, taken, _ = refills(False)
    assert first == [0] * 16 and taken == [0, 0, 0, 0, 16, 0, 0, 0]  # lockstep: all together every N_sup


def test_staggering_keeps_the_example_order(sort_data, tmp_path):
    t = trainer(sort_data, tmp_path / "run", stagger=True, augment=False)
    order = ExampleStream(len(t.train_split), 0).take(16 + 4)
    t.train_step()
    t.train_step()  # its refill takes the next 4 examples of the stream into the 4 slots that halted
    assert torch.equal(t.act.inputs[12:], torch.from_numpy(t.train_split.inputs[order[16:20]]).long())
    assert (t.act.steps[12:] == 1).all()


def test_staggered_refill_resets_the_halted_slots_only(sort_data):
    split = load_dataset(sort_data)["train"]
    torch.manual_seed(0)
    model = TRM(ModelConfig(**{**MODEL, "vocab_size": 6, "seq_len": 8}))
    a = ActCarry(model, split, batch_size=8, N_sup=4, seed=1, device=torch.device("cpu"), stagger=True)
    a.refill(0)
    assert a.steps.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    a.carry.y[:] = 5.0
    a.halted[[6, 7]] = True
    a.refill(1)
    assert a.steps.tolist() == [0, 0, 1, 1, 2, 2, 0, 0]  # the stagger applies to the first fill only
    assert torch.equal(a.carry.y[6, 0], model.y_init) and (a.carry.y[:6] == 5.0).all()


def test_staggered_run_resumes_to_the_same_weights(sort_data, tmp_path):
    full = trainer(sort_data, tmp_path / "full", stagger=True)
    full.fit()
    trainer(sort_data, tmp_path / "part", stagger=True, steps=5).fit()
    resumed = trainer(sort_data, tmp_path / "part", resume=tmp_path / "part", overrides={"steps": 12})
    resumed.fit()
    for k, v in full.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k


# --- Muon ---------------------------------------------------------------------------------------------------
def test_muon_takes_the_networks_matrices_and_adamw_the_rest():
    model = TRM(ModelConfig(**{**MODEL, "vocab_size": 6, "seq_len": 8, "networks": 2, "grad": "one_step",
                               "pos": "learned"}))
    opt = build_optimizer(model.named_parameters(), name="muon", lr=1e-3, weight_decay=0.1, betas=(0.9, 0.95))
    assert isinstance(opt, Chain)
    muon, adamw = opt.optimizers
    assert isinstance(muon, torch.optim.Muon) and isinstance(adamw, torch.optim.AdamW)
    in_muon = {id(p) for g in muon.param_groups for p in g["params"]}
    in_adamw = {id(p) for g in adamw.param_groups for p in g["params"]}
    names = {id(p): n for n, p in model.named_parameters()}
    assert {names[i] for i in in_muon} == {n for n, p in model.named_parameters()
                                           if p.ndim == 2 and n.startswith(("net.", "net_y."))}
    assert {names[i] for i in in_adamw} == {"embed_tokens.weight", "embed_pos", "lm_head.weight", "q_head.weight",
                                            "q_head.bias"}
    assert not in_muon & in_adamw
    # a step moves only what has a gradient, through the optimizer it belongs to
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    model.train()
    _, out = model(model.initial_carry(2), torch.randint(1, 6, (2, 8)), torch.zeros(2, dtype=torch.long))
    out.logits.float().square().mean().backward()
    opt.step()
    moved = {n for n, p in model.named_parameters() if not torch.equal(before[n], p)}
    assert "net.0.mlp.down.weight" in moved and "lm_head.weight" in moved
    assert len(muon.state) == len(in_muon)  # momentum buffers for Muon's own parameters, and only those


def test_muon_at_its_own_lr_follows_the_schedule(sort_data, tmp_path):
    """muon_lr > 0: Muon at that peak lr in its own scale, with its own weight decay; the schedule scales both
    optimizers alike (at every step Muon's lr / AdamW's lr = muon_lr / lr)."""
    t = trainer(sort_data, tmp_path / "own", optimizer="muon", muon_lr=0.02, muon_weight_decay=0.005, steps=4)
    muon, adamw = t.opt.optimizers
    assert muon.param_groups[0]["adjust_lr_fn"] == "original" and muon.param_groups[0]["weight_decay"] == 0.005
    assert adamw.param_groups[0]["weight_decay"] == 0.1
    seen = []
    for _ in range(4):
        t.train_step()
        seen.append((muon.param_groups[0]["lr"], adamw.param_groups[0]["lr"]))
    assert all(m == pytest.approx(a * 20) for m, a in seen) and seen[1][1] > 0  # 0.02 / 1e-3
    assert seen[-1][1] == pytest.approx(1e-3)  # past the 3-step warm-up: the peak
    # the default: one lr for both, Muon's update matched to AdamW's RMS
    d = trainer(sort_data, tmp_path / "shared", optimizer="muon").opt.optimizers[0].param_groups[0]
    assert d["adjust_lr_fn"] == "match_rms_adamw" and d["weight_decay"] == 0.1 and d["lr_scale"] == 1.0
    with pytest.raises(ValueError, match="muon_lr and muon_weight_decay are for --optimizer muon"):
        TrainConfig(optimizer="adamw", muon_lr=0.02).validate()


def test_muon_trains_and_resumes(sort_data, tmp_path):
    full = trainer(sort_data, tmp_path / "full", optimizer="muon")
    full.fit()
    trainer(sort_data, tmp_path / "part", optimizer="muon", steps=5).fit()
    resumed = trainer(sort_data, tmp_path / "part", resume=tmp_path / "part", overrides={"steps": 12})
    resumed.fit()
    for k, v in full.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k


# --- depth curriculum and step weights ----------------------------------------------------------------------
def test_depth_curriculum_parses_and_refuses_nonsense():
    cfg = ModelConfig(**MODEL)
    assert parse_depth_curriculum("4:2@0.5, 1:1@0", cfg) == [(0.0, 1, 1), (0.5, 4, 2)]
    assert parse_depth_curriculum("", cfg) == []
    for bad in ("2:1@0.2", "2-1@0", "2:1@1.5", "0:1@0"):
        with pytest.raises(ValueError, match="depth_curriculum"):
            parse_depth_curriculum(bad, cfg)
    with pytest.raises(ValueError, match="latents"):
        parse_depth_curriculum("1:1@0", ModelConfig(**{**MODEL, "recursion": "multiz"}))


def test_depth_curriculum_runs_the_configured_depth_and_evaluates_at_full(sort_data, tmp_path):
    t = trainer(sort_data, tmp_path / "run", steps=8, depth_curriculum="1:1@0,2:1@0.5,2:2@0.75")
    calls = []
    t.model.net.register_forward_hook(lambda *a: calls.append(1))
    per_step = []
    for _ in range(8):
        calls.clear()
        t.train_step()
        per_step.append(len(calls))
    # (n + 1) * T calls: 2 for 1:1 (steps 0-3), 3 for 2:1 (steps 4-5), 6 for 2:2 (steps 6-7)
    assert per_step == [2, 2, 2, 2, 3, 3, 6, 6]
    assert (t.model.cfg.n, t.model.cfg.T) == (2, 2) and t.model_cfg.n == 2  # restored: saved and evaluated so
    t.save(0.0)
    saved = json.loads((tmp_path / "run" / "checkpoint" / "config.json").read_text())["model"]
    assert (saved["n"], saved["T"]) == (2, 2)


def test_sup_curriculum_parses_and_refuses_nonsense(sort_data, tmp_path):
    assert parse_sup_curriculum("16@0.6, 4@0", 16) == [(0.0, 4), (0.6, 16)]
    assert parse_sup_curriculum(" ", 16) == []
    for bad in ("4@0.2", "4", "4@1", "0@0", "17@0", "4@0,x@0.5"):
        with pytest.raises(ValueError, match="N_sup_curriculum"):
            parse_sup_curriculum(bad, 16)
    with pytest.raises(ValueError, match="N_sup_train 1"):  # the curriculum's first stage and N_sup_train disagree
        trainer(sort_data, tmp_path / "run", N_sup_train=2, N_sup_curriculum="1@0,4@0.5")


def test_sup_curriculum_gives_each_example_the_stage_s_steps_in_stream_order(sort_data, tmp_path):
    t = trainer(sort_data, tmp_path / "run", steps=8, N_sup_curriculum="1@0,4@0.5")
    n = len(t.train_split)
    taken, per_step = [], []
    for _ in range(8):
        before = t.act.stream.epoch * n + t.act.stream.pos
        t.train_step()
        per_step.append(t.act.N_sup)
        taken.append(t.act.stream.epoch * n + t.act.stream.pos - before)
    assert per_step == [1, 1, 1, 1, 4, 4, 4, 4]
    # one step an example while N is 1 (all 16 slots refilled every step), then 4: one refill, three steps on
    assert taken == [16, 16, 16, 16, 16, 0, 0, 0]
    assert t.act.steps.tolist() == [4] * 16 and t.act.halted.all()
    ref = ExampleStream(n, t.cfg.seed).take(80)  # the order of the stream, whatever the stage
    assert t.augment is None  # the sort task is not augmented: the slots hold the stream's examples as they are
    assert torch.equal(t.act.inputs.cpu(), torch.as_tensor(t.train_split.inputs[ref[64:80]]).long())


def test_step_weights_scale_each_samples_loss():
    torch.manual_seed(0)
    logits, labels = torch.randn(3, 5, 4), torch.randint(1, 4, (3, 5))
    q = torch.randn(3)
    plain = act_loss(logits, labels, q, q, loss="softmax", loss_dtype=torch.float32)
    w = torch.tensor([2.0, 0.0, 1.0])
    weighted = act_loss(logits, labels, q, q, loss="softmax", loss_dtype=torch.float32, weights=w)
    one = [act_loss(logits[i:i + 1], labels[i:i + 1], q[i:i + 1], q[i:i + 1], loss="softmax",
                    loss_dtype=torch.float32) for i in range(3)]
    assert torch.allclose(weighted.lm, 2 * one[0].lm + one[2].lm)
    assert torch.allclose(weighted.q_halt, 2 * one[0].q_halt + one[2].q_halt)
    assert torch.allclose(plain.total, sum(o.total for o in one))


def test_trainer_step_weights_decay_by_step_and_average_one(sort_data, tmp_path):
    t = trainer(sort_data, tmp_path / "run", step_weight=0.5)
    w = t.step_weights
    assert torch.allclose(w.mean(), torch.tensor(1.0, dtype=w.dtype)) and torch.allclose(w[1] / w[0],
                                                                                       torch.tensor(0.5, dtype=w.dtype))
    assert trainer(sort_data, tmp_path / "plain").step_weights is None
    t.fit()  # it trains


# --- continuing a finished run, and the training clock -------------------------------------------------------
def test_a_finished_run_given_more_minutes_goes_on_with_a_new_schedule(sort_data, tmp_path):
    t = trainer(sort_data, tmp_path / "run", steps=6, lr_min_ratio=0.1, eval_every=3)
    t.fit()
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "eval" in r] == [3] and rows[-1]["step"] == 6
    more = trainer(sort_data, tmp_path / "run", resume=tmp_path / "run", overrides={"time_budget": 0.03})
    assert more.step == 6 and more.schedule_start == 6 and more.horizon > 6
    opt_before = more.opt.state_dict()["state"]
    assert opt_before  # the optimizer's moments came along
    lr0 = more.train_step()["lr"]
    assert lr0 < 1e-3 / 2  # a short re-warm, not the peak at once
    more.fit()
    assert more.step > 7
    ev = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert ev["step"] == more.step and ev["train_s"] > 0


def test_periodic_evaluations_record_the_training_time(sort_data, tmp_path):
    trainer(sort_data, tmp_path / "run", steps=6, eval_every=3).fit()
    evals = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
             if '"eval"' in line]
    assert [e["step"] for e in evals] == [3] and evals[0]["train_s"] > 0


# --- the difficulty curriculum ------------------------------------------------------------------------------
def test_a_restricted_stream_takes_allowed_examples_in_order_and_keeps_its_place():
    import numpy as np
    allowed = np.arange(10) % 3 == 0  # 0, 3, 6, 9
    s, ref = ExampleStream(10, seed=2), ExampleStream(10, seed=2).take(30)
    got = s.take(3, allowed)
    assert list(got) == [int(i) for i in ref if allowed[i]][:3]
    assert all(allowed[i] for i in got)
    rest = s.take(5)  # unrestricted again: on from just past the last one taken
    pos = [k for k, i in enumerate(ref) if allowed[i]][2] + 1
    assert list(rest) == list(ref[pos:pos + 5])
    with pytest.raises(ValueError, match="allows no"):
        s.take(1, np.zeros(10, bool))


def test_difficulty_curriculum_starts_with_the_easiest_and_widens(tmp_path):
    import numpy as np
    from trm.data.format import write_dataset
    rng = np.random.default_rng(0)
    x = rng.integers(2, 6, (200, 8)).astype(np.uint8)
    ratings = np.arange(200).astype(np.int32)  # the i-th example is the i-th easiest
    split = {"inputs": x, "labels": np.sort(x, 1), "puzzle_ids": np.zeros(200, np.int32), "ratings": ratings}
    data = write_dataset(tmp_path / "d", {"task": "toy", "seq_len": 8, "vocab_size": 6, "num_puzzle_ids": 1},
                         {"train": split, "test": {k: v[:16] for k, v in split.items()}})
    t = trainer(data, tmp_path / "run", steps=20, difficulty_curriculum=0.5, augment=False)
    t.train_step()
    allowed0 = t.ratings <= np.quantile(t.ratings, 0.25, method="lower")
    assert allowed0.sum() == 50
    # the first refill took only examples of the easiest quarter
    idx = [int(np.flatnonzero((t.train_split.inputs == row.numpy()).all(1))[0]) for row in t.act.inputs]
    assert max(t.ratings[idx]) < 50
    t.step = 10  # at the curriculum's end every example is allowed
    assert t._allowed() is None
    t.step = 5  # half way through it: the easiest 62.5%
    assert t._allowed().sum() == 125
    from conftest import make_sort_dataset
    with pytest.raises(ValueError, match="ratings"):
        trainer(make_sort_dataset(tmp_path / "plain"), tmp_path / "run3", difficulty_curriculum=0.5)


def test_fewer_supervision_steps_in_training_than_in_evaluation(sort_data, tmp_path):
    t = trainer(sort_data, tmp_path / "run", N_sup_train=2, steps=4, eval_every=2)
    t.act.refill(0)
    for _ in range(2):
        t.train_step()
    assert t.act.halted.all() and (t.act.steps == 2).all()  # N_sup is 4, training stops each example at 2
    t.fit()
    ev = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert ev["D"] == 4 and len(ev["exact_accuracy_by_step"]) == 4  # evaluation runs the model's N_sup
    with pytest.raises(ValueError, match="N_sup_train"):
        trainer(sort_data, tmp_path / "bad", N_sup_train=-1)
    assert trainer(sort_data, tmp_path / "deep", N_sup_train=9).N_sup_train == 4  # at most the model's N_sup


def test_the_cpu_sudoku_presets_train_with_the_fast_recipe():
    from trm.presets import get_preset
    for name in ("sudoku6-cpu", "sudoku9-cpu", "sudoku9-hard-cpu", "sudoku6-hrm-cpu"):
        t = get_preset(name).train
        assert (t.batch_size, t.lr, t.puzzle_emb_lr, t.warmup_steps, t.stagger, t.N_sup_train) == \
            (64, 3e-3, 3e-3, 50, True, 4), name
    for name in ("sudoku9-cpu", "sudoku9-hard-cpu"):  # 9x9: Muon at its own lr, with its gated unit
        p = get_preset(name)
        assert (p.train.optimizer, p.train.muon_lr, p.train.muon_weight_decay, p.model.glu) == \
            ("muon", 0.02, 0.005, "sigmoid_norm"), name
        assert (p.train.lr_min_ratio, p.train.lr_decay_fraction) == (0.1, 0.3), name  # the end annealed (WSD)
    assert get_preset("sudoku6-cpu").model.glu == "swiglu" and get_preset("sudoku6-cpu").train.optimizer == "adamw"
    hard = get_preset("sudoku9-hard-cpu").data
    assert (hard["pools"], hard["train"], hard["test"]) == (["hard"], 1000, 1000)


def test_a_training_time_budget_leaves_out_evaluation_time(sort_data, tmp_path):
    t = trainer(sort_data, tmp_path / "run", steps=10**6, time_budget=0.02, budget_clock="train", eval_every=1)
    t.fit()  # an evaluation after every step: on the wall clock the budget would go mostly to them
    ev = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert 0 < ev["train_s"] < 0.02 * 60 + 5 and t.step > 1
    with pytest.raises(ValueError, match="budget_clock"):
        trainer(sort_data, tmp_path / "bad", budget_clock="cpu").fit()


def test_the_budgets_horizon_is_refitted_both_ways_and_capped_by_steps(sort_data, tmp_path):
    """A first fit from a slow start cuts the schedule short; a later fit from the mean rate since then moves
    it out again (an arm started beside other work used to stop minutes before its budget), never past steps."""
    from tqdm import tqdm
    t = trainer(sort_data, tmp_path / "run", steps=5000, time_budget=1.0, budget_clock="train")
    bar = tqdm(disable=True)
    t._train_seconds_at_start, t.train_seconds, t.step = 0.0, 0.0, 20
    t._fit_horizon(bar, 0.0, 1.0)  # 60 s left at 1 s a step
    assert t.horizon == 20 + int(0.95 * 60)
    t.train_seconds, t.step = 30.0, 50  # then faster: 30 s left at 0.1 s a step
    t._fit_horizon(bar, 0.0, 0.1, measured=True)
    assert t.horizon == 50 + int(0.95 * 30 / 0.1)
    t._fit_horizon(bar, 0.0, 1e-4, measured=True)
    assert t.horizon == 5000  # the configured steps stay the cap
    t.train_seconds = 59.99
    t._fit_horizon(bar, 0.0, 10.0, measured=True)
    assert t.horizon == 51  # nothing fits any more: the next step is the last
