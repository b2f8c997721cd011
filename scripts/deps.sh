#!/usr/bin/env bash
# Installs what building flashattn needs, and only what is missing: CMake >= 3.24, Ninja, g++ (C++20, with
# OpenMP) and, unless --no-tests is given, GoogleTest. When everything is already there it installs nothing
# and needs no network (the GPU machine). Installs through apt-get, as root or through sudo.
#
# usage: scripts/deps.sh [--no-tests]
set -euo pipefail

readonly MIN_CMAKE_VERSION=3.24
readonly MIN_GCC_MAJOR=11  # the first g++ whose C++20 support the library relies on

want_tests=1
for arg in "$@"; do
  case "$arg" in
    --no-tests) want_tests=0 ;;
    -h | --help)
      awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
      exit 0
      ;;
    *)
      echo "deps.sh: unknown argument '$arg' (see --help)" >&2
      exit 2
      ;;
  esac
done

log() { echo "deps.sh: $*" >&2; }

# True when version $1 >= version $2 (dotted numbers).
version_at_least() {
  [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" = "$2" ]
}

cmake_ok() {
  command -v cmake > /dev/null || return 1
  local version
  version=$(cmake --version | head -n1 | awk '{print $3}')
  version_at_least "$version" "$MIN_CMAKE_VERSION"
}

gxx_ok() {
  command -v g++ > /dev/null || return 1
  local major
  major=$(g++ -dumpversion | cut -d. -f1)
  [ "$major" -ge "$MIN_GCC_MAJOR" ]
}

# GoogleTest as CMake finds it: the headers and the built libraries (Debian's libgtest-dev ships both).
gtest_ok() {
  local header found_lib=0
  for header in /usr/include/gtest/gtest.h /usr/local/include/gtest/gtest.h; do
    [ -f "$header" ] && break
    header=""
  done
  [ -n "$header" ] || return 1
  compgen -G "/usr/lib/*/libgtest.*" > /dev/null && found_lib=1
  compgen -G "/usr/lib/libgtest.*" > /dev/null && found_lib=1
  compgen -G "/usr/local/lib*/libgtest.*" > /dev/null && found_lib=1
  [ "$found_lib" -eq 1 ]
}

missing_packages=()
cmake_ok || missing_packages+=(cmake)
command -v ninja > /dev/null || missing_packages+=(ninja-build)
gxx_ok || missing_packages+=(g++)
if [ "$want_tests" -eq 1 ]; then
  gtest_ok || missing_packages+=(libgtest-dev)
fi

if [ "${#missing_packages[@]}" -eq 0 ]; then
  exit 0
fi

log "missing: ${missing_packages[*]}"
if ! command -v apt-get > /dev/null; then
  log "no apt-get here: install ${missing_packages[*]} (cmake >= $MIN_CMAKE_VERSION) by hand"
  exit 1
fi
as_root=()
if [ "$(id -u)" -ne 0 ]; then
  if ! command -v sudo > /dev/null; then
    log "not root and no sudo: install ${missing_packages[*]} as root"
    exit 1
  fi
  as_root=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update -q
"${as_root[@]}" apt-get install -y -q --no-install-recommends "${missing_packages[@]}" < /dev/null

# Older distributions package a CMake below the minimum; PyPI's cmake package carries a current one.
if ! cmake_ok; then
  log "the packaged CMake is older than $MIN_CMAKE_VERSION; installing CMake from PyPI"
  if ! command -v python3 > /dev/null || ! python3 -m pip --version > /dev/null 2>&1; then
    "${as_root[@]}" apt-get install -y -q --no-install-recommends python3-pip < /dev/null
  fi
  "${as_root[@]}" python3 -m pip install --quiet "cmake>=$MIN_CMAKE_VERSION" ||
    "${as_root[@]}" python3 -m pip install --quiet --break-system-packages "cmake>=$MIN_CMAKE_VERSION"
  hash -r
  cmake_ok || { log "CMake >= $MIN_CMAKE_VERSION is still not on PATH"; exit 1; }
fi
log "done"
