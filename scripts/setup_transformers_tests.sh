#!/usr/bin/env bash
# Fetches transformers' own common test files (ModelTesterMixin, ConfigTester, PipelineTesterMixin,
# ProcessorTesterMixin) for the transformers installed in .venv, from that release's source distribution on the
# package index, into .transformers-tests/<version>/ (not committed) for tests/transformers_suite.
#
# The sdist ships tests/*.py only. Four modules those files import are not in it; the setup writes a stand-in for each
# from tests/transformers_suite/release_gaps/ (each one says what it replaces and what it leaves out).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
VERSION=$("$PYTHON" -c "import transformers; print(transformers.__version__)")
ROOT=.transformers-tests/$VERSION
if [ -f "$ROOT/ready" ]; then
  exit 0
fi
rm -rf "$ROOT" && mkdir -p "$ROOT/download"
"$PYTHON" -m pip download -q --no-deps --no-binary :all: "transformers==$VERSION" -d "$ROOT/download"
tar -xzf "$ROOT/download/transformers-$VERSION.tar.gz" -C "$ROOT/download" "transformers-$VERSION/tests"
# The release's tests/ becomes the package `transformers_tests` (this repository's own tests/ holds the name `tests`).
mv "$ROOT/download/transformers-$VERSION/tests" "$ROOT/transformers_tests"
rm -rf "$ROOT/download"
touch "$ROOT/transformers_tests/__init__.py"
GAPS=tests/transformers_suite/release_gaps
for package in generation exporters utils; do
  mkdir -p "$ROOT/transformers_tests/$package" && touch "$ROOT/transformers_tests/$package/__init__.py"
done
cp "$GAPS/generation_test_utils.py" "$ROOT/transformers_tests/generation/test_utils.py"
cp "$GAPS/exporters_test_export.py" "$ROOT/transformers_tests/exporters/test_export.py"
cp "$GAPS/utils_test_configuration_utils.py" "$ROOT/transformers_tests/utils/test_configuration_utils.py"
mkdir -p "$ROOT/utils" "$ROOT/tests/utils"
cp "$GAPS/fetch_hub_objects_for_ci.py" "$ROOT/utils/fetch_hub_objects_for_ci.py"
# PipelineTesterMixin lists the Hub's tiny test models in this file and runs a task's test only for those; no Frozen
# model is among them (and the release ships no tests/pipelines to run), so the list is empty.
echo '{}' > "$ROOT/tests/utils/tiny_model_summary.json"
# The mixins import "transformers" from <root>/src/transformers, as in transformers' own checkout: the installed one.
mkdir -p "$ROOT/src"
INSTALLED=$("$PYTHON" -c "import os, transformers; print(os.path.dirname(transformers.__file__))")
ln -s "$INSTALLED" "$ROOT/src/transformers"
touch "$ROOT/ready"
