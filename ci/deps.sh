#!/usr/bin/env bash
# Install what hakmem needs from Debian, only what is missing (apt-get update first).
# Usage: ci/deps.sh [--peers] [PACKAGE...]
#   --peers     adds jemalloc, mimalloc and tcmalloc for comparisons
#   PACKAGE...  only these packages instead of the build set (the CI scripts' own needs)
set -euo pipefail
pkgs=(build-essential cmake pkg-config libck-dev libbenchmark-dev python3 git xz-utils gawk)
if [[ "${1:-}" == "--peers" ]]; then
  pkgs+=(libjemalloc-dev libmimalloc-dev libgoogle-perftools-dev valgrind)
  shift
fi
if (($#)); then pkgs=("$@"); fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "ci/deps.sh: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi
