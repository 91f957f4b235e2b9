#!/usr/bin/env bash
# Re-create the retaining heads shipped for SmolLM2-135M-Instruct (locret/pretrained_heads/smollm2-135m-instruct).
#   bash scripts/train_smollm2_heads.sh [DATA_DIR]     (DATA_DIR default: ../shared/data)
# Both steps resume where they stopped if interrupted: run the same command again.
# Answers are cut to their first 32 tokens: those are what the prompt shapes most, and the max-pooled labels
# of a 256-token summary answer mix many unrelated needs (on one key at 4K: 3/3 depths with 32, 2/3 with 256).
# Data: the SQuALITY train split (public-domain stories, CC BY 4.0 questions/answers); no passkey,
# number-string or key-value retrieval examples (the evaluation formats) are used.
set -euo pipefail
DATA_DIR=${1:-../shared/data}
RUN=${RUN:-runs/smollm2_heads}
MODEL=HuggingFaceTB/SmolLM2-135M-Instruct
ANSWER_TOKENS=${ANSWER_TOKENS:-32}
LABELS="$RUN/labels_a$ANSWER_TOKENS"
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1}

# 1. CIS labels plus the prompts' head inputs (so training never reruns the backbone).
python -m locret.train.data_gen --model "$MODEL" --data "$DATA_DIR/squality/train.jsonl" --format squality \
    --out "$LABELS" --max-prompt-tokens 1536 --max-answer-tokens "$ANSWER_TOKENS" --max-examples "${EXAMPLES:-160}" \
    --shard-size 16 --save-features bfloat16

# 2. Heads-only training; the paper's optimiser settings, scaled to this data size.
python -m locret.train.train --model "$MODEL" --labels "$LABELS" --out "$RUN/heads" \
    --retaining-head-size 128 --steps "${STEPS:-1500}" --warmup-steps "${WARMUP:-150}" --lr 1e-3 --max-length 1536 \
    --val-examples 8 --val-every 50 --save-every 50 $( [ -d "$RUN/heads/checkpoints" ] && echo --resume )

# 3. Ship it: the adapter goes into the package, its weights stored in bf16 (half the size).
SHIP=locret/pretrained_heads/smollm2-135m-instruct
mkdir -p "$SHIP"
python - "$RUN/heads/retaining_heads.safetensors" "$SHIP/retaining_heads.safetensors" <<'PY'
import sys

import torch
from safetensors.torch import load_file, save_file

weights = load_file(sys.argv[1])
save_file({name: w.to(torch.bfloat16) for name, w in weights.items()}, sys.argv[2], metadata={"format": "pt"})
PY
cp "$RUN/heads/locret_heads_config.json" "$RUN/heads/loss_curve.png" "$SHIP/"
