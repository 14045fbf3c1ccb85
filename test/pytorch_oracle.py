#!/usr/bin/python3
"""PyTorch oracle for the whole-model test (test/test_model_vs_pytorch.cpp).

An independent GPT-2 in PyTorch (fp32, CPU) that reads an llm.c model file and a batch file, and writes:
the logits and loss of the first batch, the gradients of all 16 parameter tensors (flat, llm.c order),
then the loss of each of `steps` AdamW steps (torch.optim.AdamW; weight decay on the matrices;
llm.c's global-norm clipping) and the final parameters.

usage: pytorch_oracle.py MODEL.bin BATCHES.bin OUT.bin --steps N --lr LR --weight-decay WD --clip CLIP
BATCHES.bin: int32 header [num_batches, B, T], then per batch B*T inputs and B*T targets (int32).
OUT.bin: float32 loss, logits (B,T,Vp), grads (total), losses (steps), final params (total).
"""
import argparse
import math
import sys

import numpy as np
import torch
import torch.nn.functional as F

NAMES = ["wte", "wpe", "ln1w", "ln1b", "qkvw", "qkvb", "attprojw", "attprojb",
         "ln2w", "ln2b", "fcw", "fcb", "fcprojw", "fcprojb", "lnfw", "lnfb"]


def read_model(path):
    header = np.fromfile(path, dtype=np.int32, count=256)
    assert header[0] == 20240326 and header[1] == 3, f"{path}: expected an fp32 llm.c model file"
    maxT, V, L, NH, C, Vp = (int(x) for x in header[2:8])
    shapes = [(Vp, C), (maxT, C), (L, C), (L, C), (L, 3 * C, C), (L, 3 * C), (L, C, C), (L, C),
              (L, C), (L, C), (L, 4 * C, C), (L, 4 * C), (L, C, 4 * C), (L, C), (C,), (C,)]
    flat = np.fromfile(path, dtype=np.float32, offset=1024)
    params, offset = {}, 0
    for name, shape in zip(NAMES, shapes):
        n = math.prod(shape)
        params[name] = torch.tensor(flat[offset:offset + n].reshape(shape), requires_grad=True)
        offset += n
    assert offset == flat.size, f"{path}: size does not match its header"
    return dict(maxT=maxT, V=V, L=L, NH=NH, C=C, Vp=Vp), params


def gelu_tanh(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def forward(cfg, p, idx):
    B, T = idx.shape
    C, NH, L = cfg["C"], cfg["NH"], cfg["L"]
    hs = C // NH
    x = p["wte"][idx] + p["wpe"][:T]
    causal = torch.tril(torch.ones(T, T, dtype=torch.bool))
    for l in range(L):
        h = F.layer_norm(x, (C,), p["ln1w"][l], p["ln1b"][l], eps=1e-5)
        qkv = h @ p["qkvw"][l].T + p["qkvb"][l]
        q, k, v = qkv.split(C, dim=2)
        q, k, v = (t.view(B, T, NH, hs).transpose(1, 2) for t in (q, k, v))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(hs)
        att = att.masked_fill(~causal, float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, C)
        x = x + y @ p["attprojw"][l].T + p["attprojb"][l]
        h = F.layer_norm(x, (C,), p["ln2w"][l], p["ln2b"][l], eps=1e-5)
        h = gelu_tanh(h @ p["fcw"][l].T + p["fcb"][l])
        x = x + h @ p["fcprojw"][l].T + p["fcprojb"][l]
    x = F.layer_norm(x, (C,), p["lnfw"], p["lnfb"], eps=1e-5)
    return x @ p["wte"].T  # (B, T, Vp): the lm head is tied to wte


def loss_of(cfg, logits, targets):
    V = cfg["V"]
    return F.cross_entropy(logits[..., :V].reshape(-1, V), targets.reshape(-1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("batches")
    ap.add_argument("out")
    ap.add_argument("--steps", type=int, required=True)
    ap.add_argument("--lr", type=float, required=True)
    ap.add_argument("--weight-decay", type=float, required=True)
    ap.add_argument("--clip", type=float, required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)

    cfg, p = read_model(args.model)
    raw = np.fromfile(args.batches, dtype=np.int32)
    nb, B, T = (int(x) for x in raw[:3])
    data = torch.tensor(raw[3:].reshape(nb, 2, B, T), dtype=torch.long)
    assert nb >= args.steps, "need one batch per step"

    logits = forward(cfg, p, data[0, 0])
    loss = loss_of(cfg, logits, data[0, 1])
    loss.backward()
    out = [np.array([loss.item()], dtype=np.float32), logits.detach().numpy().ravel()]
    out += [np.concatenate([p[n].grad.numpy().ravel() for n in NAMES])]

    tensors = [p[n] for n in NAMES]
    # Weight decay on the matrices of the model (wte, wpe and each layer's weights). Not "dim() >= 2":
    # the llm.c layout stacks per-layer vectors into (L, C) tensors, and those take no decay.
    matrices = {"wte", "wpe", "qkvw", "attprojw", "fcw", "fcprojw"}
    decay = [p[n] for n in NAMES if n in matrices]
    no_decay = [p[n] for n in NAMES if n not in matrices]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95), eps=1e-8)
    losses = []
    for step in range(args.steps):
        opt.zero_grad()
        loss = loss_of(cfg, forward(cfg, p, data[step, 0]), data[step, 1])
        loss.backward()
        norm = math.sqrt(sum(float((t.grad.double() ** 2).sum()) for t in tensors))
        if args.clip > 0 and norm > args.clip:  # llm.c's clipping: scale by clip / norm
            for t in tensors:
                t.grad.mul_(args.clip / norm)
        opt.step()
        losses.append(loss.item())
    out += [np.array(losses, dtype=np.float32)]
    out += [np.concatenate([p[n].detach().numpy().ravel() for n in NAMES])]
    np.concatenate(out).astype(np.float32).tofile(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
