#!/usr/bin/env bash
# `make train` reads tinyshakespeare's shards and GPT-2's tokenizer from DATA; this says what is missing,
# and how to fix it, before the trainer is built.
# Usage: check_data.sh DATA
set -u
data=${1:-../shared/data}
needed=(tinyshakespeare/tiny_shakespeare_train.bin tinyshakespeare/tiny_shakespeare_val.bin gpt2/gpt2_tokenizer.bin)
missing=()
for f in "${needed[@]}"; do [ -f "$data/$f" ] || missing+=("$data/$f"); done
[ ${#missing[@]} = 0 ] && exit 0
cat >&2 <<TEXT
make train: missing ${missing[*]}
  DATA=$data is the folder with tinyshakespeare/ and gpt2/ (see the README, "Data"); point it elsewhere with
      make train DATA=/path/to/data
  or train on any text of your own: make its shards, then give them to the trainer:
      make build/tools/make_shards
      build/tools/make_shards --tokenizer bytes --val-tokens 100000 --out-prefix out/data/mytext mytext.txt
      make train_gpt2 && ./train_gpt2 -e d4 --vocab-size 256 --tokenizer bytes -i out/data/mytext_train.bin \\
          -j out/data/mytext_val.bin -b 16 -t 64 -x 200 -l 2e-3 -o out/mytext
TEXT
exit 1
