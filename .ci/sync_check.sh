#!/usr/bin/env bash
# Notebooks are the source: nbdev_export, nbdev_clean and README generation must change nothing.
# In CI (a fresh clone) the tree must also be clean afterwards, an untracked new module included.
set -euo pipefail
bin=${BIN:-.venv/bin}
snapshot() {
  git status --porcelain -uall
  git diff HEAD | sha1sum
  git ls-files --others --exclude-standard -z | xargs -0 -r sha1sum
}
before=$(snapshot)
"$bin/nbdev_export"
"$bin/nbdev_clean"
cp nbs/pipelines/train.ipynb ml_workflow_training/templates/train.ipynb  # the template ships as package data
"$bin/python" .ci/make_readme.py
after=$(snapshot)
if [ "$before" != "$after" ]; then
  echo "Out of sync: nbdev_export / nbdev_clean / README generation changed files:"
  diff <(echo "$before") <(echo "$after") || true
  exit 1
fi
if [ "${CI:-}" = "true" ] && [ -n "$(git status --porcelain -uall)" ]; then
  echo "Out of sync: the clone is not clean after export:"; git status --porcelain -uall; exit 1
fi
echo "sync: notebooks, package and README agree"
