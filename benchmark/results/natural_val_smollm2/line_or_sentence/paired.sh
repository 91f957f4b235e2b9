#!/usr/bin/env bash
# Prompt-by-prompt comparison, per case: the recommended scorer (../paragraphs/'s runs) against the hybrid.
set -euo pipefail
H="lines:max_line=32:sentence_surprisal_weight=2"
for spec in niah_val_8k:par_val_8k:niah_text_paragraphs:8000 niah_val_16k:par_val_16k:niah_text_paragraphs:16384 \
            niah_val_32k:par_val_32k:niah_text_paragraphs:32768 wrapped_val_16k:wrap_val_16k:niah_text:16384 \
            wrapped_val_32k:wrap_val_32k:niah_text:32768; do
  IFS=: read -r base hybrid task length <<< "$spec"
  for depth in 0 0.25 0.5 0.75 1; do
    echo "### $task $length, depth $depth"
    python -m benchmark.paired \
      "recommended (max_line 32)=runs/paragraphs/$base/$task-validation/lines:max_line=32/b1024_L${length}_d$depth" \
      "line or sentence=runs/hybrid/$hybrid/$task-validation/$H/b1024_L${length}_d$depth" | grep "^|"
    echo
  done
done
