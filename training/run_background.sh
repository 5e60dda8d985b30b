#!/bin/sh
# Background CPU training as run on the 2-core development machine: one run with a learning
# rate decay at its end, then a long low-learning-rate continuation. Both resume from
# training/checkpoints/ and export to codec_engine/zoo/weights/ as they go.
cd "$(dirname "$0")/.." || exit 1
PY=${PY:-.venv/bin/python}
$PY -m training.train --minutes "${FIRST_MINUTES:-105}" "$@" &&
$PY -m training.train --minutes "${SECOND_MINUTES:-240}" --lr 1e-4 --final-lr 2e-5 "$@"
