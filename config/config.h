// Folder config/: the run's options (here), the flag table, recipes, and their resolution into each
// floor's options (OptimizerConfig, ProcessOptions). Below the trainer, above optim/, dist/, model/ and
// common/, which it may include (tools/check_includes.py).
//
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
    int vocab_size = 0;                // --vocab-size a descriptor's vocabulary; 0: GPT-2's 50257
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
    // optimizer and schedule (METHODS.md section 3; the README lists what each option does)
    std::string recipe;                // --recipe preset of the options below (config/recipes.cpp); flags override
    std::string optimizer = "adamw";   // --optimizer adamw|lion|liona|lionar
    float lr = 3e-4f;                  // -l (lion family: Lion's learning rate; lionar turns by its equilibrium angle)
    std::string warmup = "0";          // -u steps ("700") or a percentage of the run's steps ("5%")
    float final_lr_frac = 1.0f;        // -q
    std::string schedule = "cosine";   // -k
    float cooldown_frac = 0.2f;        // --cooldown-frac (trapezoid)
    float weight_decay = 0.0f;         // -c
    float beta1 = -1.0f;               // --beta1; -1: the optimizer's default (0.9)
    float beta2 = -1.0f;               // --beta2; -1: the optimizer's default (adamw 0.95, lion family 0.99)
    float eps = 1e-8f;                 // --eps (adamw)
    float grad_clip = 1.0f;            // --grad-clip 0: off
    int bias_correction = 1;           // --bias-correction adamw: divide m by 1 - beta1^t
    int nesterov = 0;                  // --nesterov lion family: beta1 = beta2^2
    std::string inverse_bias_correction = "none";  // --inverse-bias-correction none|step|snr
    std::string control = "rows";      // --control rows|tensor (lionar)
    int control_embeddings = 0;        // --control-embeddings 1: wte and wpe are controlled too
    int center = 0;                    // --center 1: centre controlled rows and their updates
    std::string angle_norm = "smoothed";  // --angle-norm strict|smoothed (lionar)
    float norm_ema = 0.9f;             // --norm-ema rho of the smoothed normalisation
    std::string target_angle = "equilibrium";  // --target-angle equilibrium|lr (lionar)
    std::string rrc_correction = "none";  // --rrc-correction none|alignment|norm-ratio (lionar)
    float k_min = 0.1f;                // --k-min (lionar's RRC correction)
    float snr_ema = 0.9f;              // --snr-ema (lionar's RRC correction)
    int row_gains = 0;                 // --row-gains 1: a learnable gain per controlled row
    float rrc_target = 0.0f;           // --rrc-target (liona, lionar): direct RRC control; 0: off
    // update-size metrics (METHODS.md section 2)
    int metrics_every = 0;             // --metrics-every N; 0: off
    int metrics_rrc = 1;               // --metrics-rrc 0|1: the relative representation change too
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
    // several processes (data parallel)
    int processes = 0;                 // -pn processes of the run; 0: from the launcher's environment, else 1
    int process_rank = -1;             // -pr this process's rank; -1: from the launcher's environment
    std::string process_dir;           // -pf folder where the processes meet; empty: the output folder
    std::string process_init = "fs";   // -pi fs|tcp how GPU processes exchange NCCL's id: the folder, or -ps
    std::string process_server;        // -ps rank 0's HOST:PORT (-pi tcp)
    int zero_stage = 1;                // -z 1: shard the optimizer state and master weights (ZeRO-1); 0: replicate
    int threads = 0;                   // --threads CPU threads; 0: OpenMP's default
    // CUDA path
    std::string precision = "bf16";    // --precision bf16|fp32 on the GPU (the CPU path is fp32)
    std::string attention = "flash";   // --attention flash|cudnn on the GPU
    int recompute = 1;                 // -r 0|1|2 GPU: recompute GELU (1) and layernorms (2) in backward
    int gelu_fusion = 0;               // -ge 0|1 GPU: GELU in cuBLASLt's epilogue
};

}  // namespace coldstart
