#!/usr/bin/python3
"""Oracle for the optimizer tests (test/test_optimizers.cpp): independent float32 implementations of
torch.optim.AdamW itself, AdamW without momentum bias correction (PyTorch's single-tensor AdamW with the
step size lr instead of lr / (1 - beta1^t)), and Lion as Chen et al. (2023) publish it.

usage: optimizer_oracle.py IN.bin OUT.bin --rule adamw|adamw-nobc|lion --beta1 B1 --beta2 B2 --eps EPS --wd WD
IN.bin:  int32 [n, steps], float32 params (n), decay mask (n, 1.0 = takes weight decay), then per step
         grads (n), grad scale, lr.
OUT.bin: float32 params after each step (steps x n).
"""
import argparse
import math
import sys

import numpy as np
import torch


def lion_step(p, g, m, lr, b1, b2, wd):
    # Chen et al. 2023, Program 1: update = sign(interp(g, m, b1)); p -= lr * (update + wd * p); m = interp(g, m, b2)
    p.mul_(1 - lr * wd)
    update = (m * b1 + g * (1 - b1)).sign_()
    p.add_(update, alpha=-lr)
    m.mul_(b2).add_(g, alpha=1 - b2)


def adamw_nobc_step(p, g, m, v, t, lr, b1, b2, eps, wd):
    # torch.optim.AdamW's single-tensor update with the first moment used as it is.
    p.mul_(1 - lr * wd)
    m.lerp_(g, 1 - b1)
    v.mul_(b2).addcmul_(g, g, value=1 - b2)
    denom = (v.sqrt() / math.sqrt(1 - b2 ** t)).add_(eps)
    p.addcdiv_(m, denom, value=-lr)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("inp")
    ap.add_argument("out")
    ap.add_argument("--rule", required=True, choices=["adamw", "adamw-nobc", "lion"])
    ap.add_argument("--beta1", type=float, required=True)
    ap.add_argument("--beta2", type=float, required=True)
    ap.add_argument("--eps", type=float, default=1e-8)
    ap.add_argument("--wd", type=float, required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)

    header = np.fromfile(args.inp, dtype=np.int32, count=2)
    n, steps = int(header[0]), int(header[1])
    data = np.fromfile(args.inp, dtype=np.float32, offset=8)
    params, mask = data[:n], data[n:2 * n] > 0.5
    per_step = data[2 * n:].reshape(steps, n + 2)
    # Two tensors, decayed and not: every rule is elementwise, so the grouping changes nothing else.
    groups = [torch.tensor(params[mask]), torch.tensor(params[~mask])]
    decays = [args.wd, 0.0]
    for p in groups:
        p.requires_grad_(True)
    torch_adamw = None
    if args.rule == "adamw":
        torch_adamw = torch.optim.AdamW([{"params": [groups[0]], "weight_decay": args.wd},
                                         {"params": [groups[1]], "weight_decay": 0.0}],
                                        lr=1.0, betas=(args.beta1, args.beta2), eps=args.eps, foreach=False)
    m = [torch.zeros_like(p) for p in groups]
    v = [torch.zeros_like(p) for p in groups]
    out = []
    for t in range(1, steps + 1):
        grads = torch.tensor(per_step[t - 1, :n])
        scale = torch.tensor(per_step[t - 1, n])
        lr = float(per_step[t - 1, n + 1])
        gs = [grads[torch.tensor(mask)] * scale, grads[torch.tensor(~mask)] * scale]  # float32, as the trainer scales
        with torch.no_grad():
            if torch_adamw is not None:
                for group in torch_adamw.param_groups:
                    group["lr"] = lr
                for p, g in zip(groups, gs):
                    p.grad = g.clone()
                torch_adamw.step()
            else:
                for i, (p, g) in enumerate(zip(groups, gs)):
                    if args.rule == "lion":
                        lion_step(p, g, m[i], lr, args.beta1, args.beta2, decays[i])
                    else:
                        adamw_nobc_step(p, g, m[i], v[i], t, lr, args.beta1, args.beta2, args.eps, decays[i])
        flat = np.empty(n, dtype=np.float32)
        flat[mask] = groups[0].detach().numpy()
        flat[~mask] = groups[1].detach().numpy()
        out.append(flat)
    np.concatenate(out).astype(np.float32).tofile(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
