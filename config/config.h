// Everything a training run is configured by. Filled from defaults, then a JSON config file (--config),
// then command-line flags (flags win), all through the one option table in flags.cpp; the final values
// are written beside the logs as config.json, which --config reads back to repeat a run.
#pragma once

#include <cstdint>
#include <string>

namespace coldstart {

struct Config {
    // data and model
    std::string train_data;            // -i glob of llm.c token shards
    std::string val_data;              // -j glob; empty: no validation
    std::string init = "d12";          // -e model file or descriptor
    std::string output_dir;            // -o logs, config, checkpoints; empty: write nothing
    std::string tokenizer;             // encoder.json+vocab.bpe folder or gpt2_tokenizer.bin, for samples
    std::string config_file;           // --config (recorded for the log; not written back)
    // batch
    int batch_size = 4;                // -b micro-batch B
    int seq_len = 1024;                // -t T
    int64_t total_batch_tokens = -1;   // -d tokens per optimizer step; -1: B*T (no accumulation)
    int64_t max_steps = -1;            // -x -1: one epoch of the training data
    int shuffle = 0;                   // --shuffle 0|1
    uint64_t seed = 42;                // --seed init, shuffling, sampling
    // optimizer and schedule
    std::string optimizer = "adamw";   // --optimizer
    float lr = 3e-4f;                  // -l
    int warmup_steps = 0;              // -u
    float final_lr_frac = 1.0f;        // -q
    std::string schedule = "cosine";   // -k
    float cooldown_frac = 0.2f;        // --cooldown-frac (trapezoid)
    float weight_decay = 0.0f;         // -c
    float beta1 = 0.9f;                // --beta1
    float beta2 = 0.95f;               // --beta2
    float eps = 1e-8f;                 // --eps
    float grad_clip = 1.0f;            // --grad-clip 0: off
    // evaluation, sampling, output
    int val_every = 20;                // -v 0: never (except at the end)
    int val_batches = 20;              // -m
    int sample_every = 20;             // -s 0: never
    int gen_tokens = 64;               // -g
    int checkpoint_every = 0;          // -n every N steps and at the end (needs -o); 0: never
    int checkpoint_keep = 0;           // -nk keep the last N checkpoints; 0: all
    int checkpoint_keep_every = 0;     // -nm also keep every M-th checkpoint forever; 0: none
    int resume = 0;                    // -y 1: continue from the newest complete checkpoint in -o
    // robustness
    float skip_loss_z = 0.0f;          // -sl skip a step whose loss z-score exceeds this; 0: off
    float skip_norm_z = 0.0f;          // -sg skip a step whose grad-norm z-score exceeds this; 0: off
    int max_bad_steps = 5;             // --max-bad-steps stop after this many non-finite steps in a row
    std::string inject_nonfinite;      // --inject-nonfinite "5,6": testing: make these steps' loss NaN
    int save_bf16 = 0;                 // --save-bf16 model files in bf16 (version 5)
    std::string device = "auto";       // --device auto|cpu|cuda
    int threads = 0;                   // --threads CPU threads; 0: OpenMP's default
    // CUDA path
    std::string precision = "bf16";    // --precision bf16|fp32 on the GPU (the CPU path is fp32)
    std::string attention = "flash";   // --attention flash|cudnn on the GPU
    int recompute = 1;                 // -r 0|1|2 GPU: recompute GELU (1) and layernorms (2) in backward
    int gelu_fusion = 0;               // -ge 0|1 GPU: GELU in cuBLASLt's epilogue
};

}  // namespace coldstart
