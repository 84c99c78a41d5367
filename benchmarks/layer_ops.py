"""The layer-level measurements behind docs/performance.md, section 2 (paper MLP shapes, batch 64, fp32).

    python benchmarks/layer_ops.py

1. the MLP-T token mixer three ways, forward + backward: torch.matmul(W, h) with a 2-D W (the former layer:
   torch folds the batch and copies the result back), the reference's transpose layout, and the layer as it is
   (trm.model.layers.SequenceSwiGLU: a batched matmul over the expanded weight);
2. RMSNorm over the last axis: trm's formula against torch's fused F.rms_norm, with and without autograd;
3. the token mixer without autograd, its silu(gate) * up (on (64, 512, 512)) out of place and in place.
Prints milliseconds per call. The allocator is tuned as the CLI does. A benchmark, not a test.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from trm.model.layers import SequenceSwiGLU, rms_norm
from trm.runtime import tune_allocator


def ms(fn, seconds=2.0) -> float:
    fn()
    reps, t0 = 0, time.perf_counter()
    while reps < 2 or time.perf_counter() - t0 < seconds:
        fn()
        reps += 1
    return (time.perf_counter() - t0) / reps * 1e3


def main():
    tune_allocator()
    torch.manual_seed(0)
    B, L, d = 64, 97, 512
    mixer = SequenceSwiGLU(L, 4.0)
    W, Wd, H = mixer.gate_up.weight, mixer.down.weight, mixer.hidden

    def folded(h):  # the former layer
        gate, up = torch.matmul(W, h).chunk(2, dim=-2)
        return rms_norm(h + torch.matmul(Wd, F.silu(gate) * up), dim=-2)

    def transposed(h):  # the reference's layout
        gate, up = F.linear(h.transpose(1, 2), W).chunk(2, dim=-1)
        return rms_norm(h + F.linear(F.silu(gate) * up, Wd).transpose(1, 2), dim=-2)

    print(f"1. token mixer, batch {B}, L {L}, d {d}, hidden {H}: forward + backward")
    for name, fn in (("torch.matmul(W, h) (former)", folded), ("transpose layout (reference)", transposed),
                     ("expanded-weight bmm (trm)", mixer)):
        h = torch.randn(B, L, d, requires_grad=True)
        print(f"   {name:30s} {ms(lambda: fn(h).square().sum().backward()):7.1f} ms")

    print(f"2. RMSNorm over the last axis, ({B}, {L}, {d})")
    x = torch.randn(B, L, d)
    xg = x.clone().requires_grad_(True)
    print(f"   no autograd: trm formula {ms(lambda: (x * torch.rsqrt(x.square().mean(-1, keepdim=True) + 1e-5))):6.2f}"
          f" ms, F.rms_norm {ms(lambda: F.rms_norm(x, (d,), eps=1e-5)):6.2f} ms")
    print(f"   autograd:    trm formula {ms(lambda: rms_norm(xg).sum().backward()):6.2f} ms, "
          f"F.rms_norm {ms(lambda: F.rms_norm(xg, (d,), eps=1e-5).sum().backward()):6.2f} ms")

    print(f"3. the token mixer without autograd, batch {B}: silu(gate) * up out of place / in place (trm)")
    h = torch.randn(B, L, d)

    def out_of_place(h):
        gate = torch.bmm(W[:H].expand(B, -1, -1), h)
        up = torch.bmm(W[H:].expand(B, -1, -1), h)
        return rms_norm(h + torch.bmm(Wd.expand(B, -1, -1), F.silu(gate) * up), dim=-2)

    with torch.no_grad():
        print(f"   out of place {ms(lambda: out_of_place(h)):6.1f} ms, in place (the layer) {ms(lambda: mixer(h)):6.1f} ms")

if __name__ == "__main__":
    main()
