#!/usr/bin/env bash
# Everything a fresh Debian 12 machine needs, idempotent. Run as root (the sandbox uses chroot).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
# chromium: the console's browser tests (driven by Playwright, never its own browser download)
# curl: bench_web times report.csv with it (bench/real_clients.py), as the README's API examples use it
# capsh: tests/test_pg_cluster_ptrace.py runs `ivr db` without CAP_SYS_PTRACE, as in a container
# node: tests/test_web_local_time.py runs the console's live-update script (console.js)
# openssl: tests/test_webhooks_receivers.py makes a self-signed certificate for an HTTPS receiver
# python3: ivr itself (a minimal Debian image has none)
for tool in python3:python3 mmdebstrap:mmdebstrap ffmpeg:ffmpeg espeak-ng:espeak-ng sipp:sip-tester chromium:chromium curl:curl capsh:libcap2-bin node:nodejs openssl:openssl; do
  command -v "${tool%%:*}" >/dev/null 2>&1 || need+=("${tool##*:}")
done
# postgresql: the server binaries `ivr db up` and the tests' private cluster run (its own
# data directory; Debian's `main` cluster is left alone). Not on PATH: look where Debian puts them.
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || need+=(postgresql)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: installing ${need[*]} needs root: run as root (or sudo)" >&2; exit 1
  fi
  echo "setup: apt-get install ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

# Debian's own python3 is "externally managed" (PEP 668): pip refuses to install into it. Then
# ivr goes into a virtual environment (IVR_VENV, default /opt/ivr-venv) and its `ivr` command is
# linked into IVR_BIN_DIR (default /usr/local/bin). A python3 of one's own (pyenv, a venv
# already active) is used as it is. The Makefile runs pytest with the python written here.
py=python3
if [ -z "${VIRTUAL_ENV:-}" ] && python3 -c 'import os, sys, sysconfig
sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")) else 1)'; then
  venv="${IVR_VENV:-/opt/ivr-venv}"
  if [ ! -x "$venv/bin/python3" ]; then
    python3 -c 'import ensurepip' >/dev/null 2>&1 || {
      echo "setup: apt-get install python3-venv (Debian's python3 is externally managed)"
      apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null; }
    echo "setup: python3 -m venv $venv"
    python3 -m venv "$venv"
    rm -f .sandbox/.pip-stamp  # a new environment: install into it
  fi
  py="$venv/bin/python3"
  mkdir -p "${IVR_BIN_DIR:-/usr/local/bin}"
  ln -sf "$venv/bin/ivr" "${IVR_BIN_DIR:-/usr/local/bin}/ivr"
fi
mkdir -p .sandbox
# From /: the checkout itself would make `import ivr` succeed without the install.
if ! (cd / && "$py" -c "import ivr, pytest, pytest_asyncio") >/dev/null 2>&1 || [ pyproject.toml -nt .sandbox/.pip-stamp ]; then
  echo "setup: pip install -e .[test]"
  "$py" -m pip install -q --disable-pip-version-check -e '.[test]'
  touch .sandbox/.pip-stamp
fi
"$py" -m pip check
command -v "$py" > .sandbox/python  # the Makefile's python (make test)
