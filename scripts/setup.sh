#!/usr/bin/env bash
# Everything a fresh Debian 12 machine needs, idempotent. Run as root (the sandbox uses chroot).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
# chromium: the console's browser tests (driven by Playwright, never its own browser download)
# curl: bench_web times report.csv with it (bench/real_clients.py), as the README's API examples use it
# capsh: tests/test_pg_cluster_ptrace.py runs `ivr db` without CAP_SYS_PTRACE, as in a container
for tool in mmdebstrap:mmdebstrap ffmpeg:ffmpeg espeak-ng:espeak-ng sipp:sip-tester chromium:chromium curl:curl capsh:libcap2-bin; do
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

# From /: the checkout itself would make `import ivr` succeed without the install.
if ! (cd / && python3 -c "import ivr, pytest, pytest_asyncio") >/dev/null 2>&1 || [ pyproject.toml -nt .sandbox/.pip-stamp ]; then
  echo "setup: pip install -e .[test]"
  python3 -m pip install -q --disable-pip-version-check -e '.[test]'
  mkdir -p .sandbox && touch .sandbox/.pip-stamp
fi
python3 -m pip check
