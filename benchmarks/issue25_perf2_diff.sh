#!/usr/bin/env bash
# Byte-compare the reports of a `verify --reference` run (dir $1) with the committed reports
# (dir $2, default: reports/ of this tree): every *.md and *.json that both hold, the harness
# fingerprint line aside (it hashes the source, so it differs by construction); timings.json left out.
# Usage: benchmarks/issue25_perf2_diff.sh /tmp/pf2/ref [reports] ; exit 0 iff identical.
new=${1:?run directory}; old=${2:-reports}
strip() { grep -v -i -e 'fingerprint' -e '"harness": ' "$1"; }
bad=0; n=0
for f in "$new"/*.md "$new"/*.json; do
  b=$(basename "$f"); [ "$b" = timings.json ] && continue
  if [ ! -e "$old/$b" ]; then echo "only in $new: $b"; bad=1; continue; fi
  n=$((n+1))
  if ! diff -q <(strip "$f") <(strip "$old/$b") >/dev/null; then echo "DIFFERS: $b"; diff <(strip "$f") <(strip "$old/$b") | head -5; bad=1; fi
done
for f in "$old"/*.json "$old"/*.md; do b=$(basename "$f"); case $b in numpy_*|keras_*|torch_*|index.*|jax_*|flax_*) [ -e "$new/$b" ] || { echo "missing in $new: $b"; bad=1; };; esac; done
echo "compared $n files: $([ $bad = 0 ] && echo identical || echo DIFFERENT)"
exit $bad
