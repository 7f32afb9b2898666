#!/usr/bin/env bash
# The GPU benchmark set, one script for a short lease on an accelerator.
#
#   benchmarks/gpu.sh LIKELIHOODS OUT [PARTS...]
#
# PARTS (default: sampling fits): any of
#   sampling   sampling_throughput.py on ATLAS-SUSY-2018-04 with 256 chains
#   dataset    `difflike sample` of 100,000 labelled ATLAS-SUSY-2018-04 yields into
#              OUT/dataset-2018-04.tar (a surrogate's training set; resumable)
#   fits       profile_vs_pyhf.py: CLs grid + fit throughput at 10^0..10^5 hypotheses
#   limits     profile_vs_pyhf.py: the 2018-04 upper-limit grid (one pyhf point timed)
#   surrogate  surrogate_speed.py on the surrogate folder in $SURROGATE
#   dataset19  `difflike sample` of $N_DATASET19 (default 120,000) ATLAS-SUSY-2019-08
#              yields with label restarts into OUT/dataset-2019-08 (resumable; what
#              is committed when the limit strikes is kept; $CHAINS19 chains per
#              density, default 32)
#   train19    the default surrogate on that dataset, then surrogate_accuracy.py
#              (test split + the 125 patchset points); the surrogate folder comes
#              back as OUT/surrogate-2019-08.tar
#              One 10-minute call holds `dataset19 train19 bundle19` with the
#              default limits (330 + 150 + 100 s): 8 files come back at most, and
#              120,000 rows make ~33 MB of .tgz (3 parts) beside 4 logs and the tar
#   bundle19   the dataset as OUT/dataset-2019-08.tgz.NN, 15 MB parts (the files
#              that come back are capped at 16 MB each): `cat *.tgz.* | tar -xz`
# Each part runs under its own time limit ($LIMIT_<PART>, seconds) so that one slow
# part cannot take the others' time (on an H200, 2026-12-04: the sampling part's
# first call compiles for over 190 s on an empty cache; the dataset part then makes
# ~1,400 labelled rows/s; the fits part takes ~130 s). Its figures go to
# OUT/<part>.json, its output and log to OUT/<part>.log, a line per part to OUT/summary.log. pyhf runs on the
# host's CPU (numpy backend) in the same run.
set -uo pipefail
lik=${1:?likelihoods folder}
out=${2:?output folder}
shift 2
parts=("${@:-sampling fits}")
here=$(cd "$(dirname "$0")" && pwd)
export PYTHONUNBUFFERED=1
# one compilation cache for all parts: the dataset part reuses the sampling part's programs
export JAX_COMPILATION_CACHE_DIR=${JAX_COMPILATION_CACHE_DIR:-/tmp/difflike-jax-cache}
mkdir -p "$out"
python3 -c 'import jax; print("jax", jax.__version__, jax.devices())' 2>&1 | tee "$out/summary.log"

run() {  # run NAME LIMIT CMD...
  local name=$1 limit=$2
  shift 2
  local start=$SECONDS
  timeout "$limit" "$@" >"$out/$name.log" 2>&1
  echo "== $name: rc $? in $((SECONDS - start)) s" | tee -a "$out/summary.log"
  grep -v '%|' "$out/$name.log" | tail -n 30
}

for part in ${parts[*]}; do
  case $part in
  sampling)
    run sampling "${LIMIT_SAMPLING:-360}" python3 "$here/sampling_throughput.py" \
      --likelihoods "$lik" --analysis 2018-04 --chains 32 --n 12800 \
      --json "$out/sampling.json" ;;
  dataset)
    run dataset "${LIMIT_DATASET:-240}" python3 -m difflike sample \
      "$lik/ATLAS-SUSY-2018-04/BkgOnly.json" --signal-regions SR1cut_cuts SR2cut_cuts \
      --n 100000 --chains 32 --out "$out/dataset-2018-04" --json
    tar -C "$out" -cf "$out/dataset-2018-04.tar" dataset-2018-04 &&
      rm -rf "$out/dataset-2018-04" ;;
  fits)
    run fits "${LIMIT_FITS:-240}" python3 "$here/profile_vs_pyhf.py" \
      --likelihoods "$lik" --skip limits --pyhf-points 3 --pyhf-fits 3 \
      --batches 1024 16384 65536 --repeats 2 --json "$out/fits.json" ;;
  limits)
    run limits "${LIMIT_LIMITS:-300}" python3 "$here/profile_vs_pyhf.py" \
      --likelihoods "$lik" --skip cls fits --pyhf-limit-points 1 --repeats 2 \
      --json "$out/limits.json" ;;
  surrogate)
    run surrogate "${LIMIT_SURROGATE:-180}" python3 "$here/surrogate_speed.py" \
      --surrogate "${SURROGATE:?surrogate folder}" --n-eval 100000 \
      --n-limits 10000 --n-exact 1024 --json "$out/surrogate.json" ;;
  dataset19)
    run dataset19 "${LIMIT_DATASET19:-330}" python3 -m difflike sample \
      "$lik/ATLAS-SUSY-2019-08/BkgOnly.json" \
      --signal-regions SRLMEM_mct2 SRMMEM_mct2 SRHMEM_mct2 \
      --n "${N_DATASET19:-120000}" --chains "${CHAINS19:-32}" --out "$out/dataset-2019-08" --json ;;
  train19)
    # the recipe measured on the CPU (docs/surrogates.md), on however many rows
    # dataset19 committed; $TRAIN19_ARGS adds options (e.g. the SiLU 3x256 recipe).
    # The accuracy runs only on a finished surrogate (it would train one itself);
    # the checkpoints come back too, so a cut-off training resumes elsewhere.
    run train19 "${LIMIT_TRAIN19:-150}" python3 -m difflike train \
      "$out/dataset-2019-08" --out "$out/surrogate-2019-08" --batch-size 256 \
      --epochs 300 --patience 40 --trials 2 --ensemble 2 --quiet ${TRAIN19_ARGS:-}
    [ -f "$out/surrogate-2019-08/surrogate.json" ] &&
      run accuracy19 "${LIMIT_ACCURACY19:-100}" python3 "$here/surrogate_accuracy.py" \
        --dataset "$out/dataset-2019-08" --out "$out/surrogate-2019-08" --markdown
    tar -C "$out" -cf "$out/surrogate-2019-08.tar" surrogate-2019-08 &&
      rm -rf "$out/surrogate-2019-08" ;;
  bundle19)
    tar -C "$out" -czf - dataset-2019-08 | split -b 15M -d - "$out/dataset-2019-08.tgz." &&
      rm -rf "$out/dataset-2019-08" ;;
  *) echo "unknown part $part" >&2 ;;
  esac
done
