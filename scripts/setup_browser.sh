#!/usr/bin/env bash
# Installs what the app and its browser test need: headless Chromium from Debian's packages (never a downloaded
# browser build), and the app, retrieval and browser-driver extras into ./.venv (Gradio adds no torchvision).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x /usr/bin/chromium ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver >/dev/null
fi
. .venv/bin/activate
python -m pip install -q -e ".[app,retrieval,browser]"
