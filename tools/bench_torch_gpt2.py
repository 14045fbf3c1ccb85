#!/usr/bin/env python3
"""GPT-2 124M training throughput in PyTorch, the reference of `make bench`.

The same model as coldstart's (pre-layernorm GPT-2, tanh GELU, causal attention, biases, tied
embeddings, vocabulary padded to 50304, T=1024), trained the way a careful PyTorch user would:
torch.compile, F.scaled_dot_product_attention (flash attention), bf16 autocast over fp32 master
weights, fused AdamW with weight decay on matrices only, global gradient-norm clipping. Random
tokens: only the speed is measured. Prints "torch tokens/s: N" for tools/bench_gpu.sh.

Differences from coldstart, each in PyTorch's favour or neutral: the loss runs over all 50304 logits
(coldstart excludes the 47 padded columns), and nothing is checked for non-finite values.
"""
import argparse
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, channels, heads):
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(channels)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.attproj = nn.Linear(channels, channels)
        self.ln2 = nn.LayerNorm(channels)
        self.fc = nn.Linear(channels, 4 * channels)
        self.fcproj = nn.Linear(4 * channels, channels)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, self.heads, C // self.heads).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.attproj(y.transpose(1, 2).contiguous().view(B, T, C))
        return x + self.fcproj(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))


class GPT2(nn.Module):
    def __init__(self, layers=12, channels=768, heads=12, vocab=50304, max_len=1024):
        super().__init__()
        self.wte = nn.Embedding(vocab, channels)
        self.wpe = nn.Embedding(max_len, channels)
        self.blocks = nn.ModuleList(Block(channels, heads) for _ in range(layers))
        self.lnf = nn.LayerNorm(channels)
        for name, p in self.named_parameters():  # llm.c's initialisation
            if name.endswith("bias"):
                nn.init.zeros_(p)
            elif p.dim() >= 2:
                std = 0.02 / math.sqrt(2 * layers) if name.endswith("proj.weight") else 0.02
                nn.init.normal_(p, std=std)

    def forward(self, tokens, targets):
        T = tokens.shape[1]
        x = self.wte(tokens) + self.wpe(torch.arange(T, device=tokens.device))
        for block in self.blocks:
            x = block(x)
        logits = self.lnf(x) @ self.wte.weight.t()  # the lm head is tied to wte
        return F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1))  # fp32 under autocast


def measure(batch, seq, steps, warmup):
    torch.manual_seed(0)
    model = GPT2().cuda()
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=6e-4, betas=(0.9, 0.95), eps=1e-8, fused=True)
    step_fn = torch.compile(model)
    tokens = torch.randint(0, 50257, (batch, seq + 1), device="cuda")
    x, y = tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()
    params = list(model.parameters())

    def step():
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
            loss = step_fn(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    t0 = time.time()
    for _ in range(warmup):
        step()
    torch.cuda.synchronize()
    print(f"torch: compile and {warmup} warm-up steps took {time.time() - t0:.1f} s", flush=True)
    t0 = time.time()
    for _ in range(steps):
        loss = step()
    torch.cuda.synchronize()
    elapsed = time.time() - t0
    return batch * seq * steps / elapsed, elapsed / steps, float(loss)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seq", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    args = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    print(f"torch {torch.__version__} on {torch.cuda.get_device_name(0)}", flush=True)
    batch = args.batch
    while True:
        try:
            tps, step_s, loss = measure(batch, args.seq, args.steps, args.warmup)
            break
        except torch.OutOfMemoryError:
            if batch == 1:
                raise
            batch //= 2
            torch.cuda.empty_cache()
            print(f"torch: out of memory, retrying with B={batch}", flush=True)
    print(f"torch: B={batch} T={args.seq}: {step_s * 1e3:.1f} ms/step, loss {loss:.3f}")
    print(f"torch tokens/s: {tps:.0f}")


if __name__ == "__main__":
    main()
