#!/usr/bin/env bash
# Installs what building flashattn needs, and only what is missing: CMake >= 3.24, Ninja, g++ (C++20, with
# OpenMP) and, unless --no-tests is given, GoogleTest. When everything is already there it installs nothing
# and needs no network (the GPU machine). Installs through apt-get, as root or through sudo.
# With --python-venv=DIR, also what the Python package's build and tests need: python3 with pip and headers
# (apt-get), and DIR, a virtual environment that sees the system's packages (PyTorch, CuPy, ... where
# installed) and gets from PyPI those of PYTHON_PACKAGES below that are missing or too old.
#
# usage: scripts/deps.sh [--no-tests] [--python-venv=DIR]
set -euo pipefail

readonly MIN_CMAKE_VERSION=3.24
readonly MIN_GCC_MAJOR=11  # the first g++ whose C++20 support the library relies on

want_tests=1
python_venv=""
for arg in "$@"; do
  case "$arg" in
    --no-tests) want_tests=0 ;;
    --python-venv=*) python_venv=${arg#--python-venv=} ;;
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

# The Python package's build and test packages: name, the version installed when it is missing or too
# old, and the oldest version accepted (so that a machine's own, recent enough, serve without network).
readonly PYTHON_PACKAGES=(
  "nanobind 3.1.0 2.0"
  "scikit-build-core 1.1.2 0.10"
  "numpy 2.4.6 1.22"
  "pytest 9.2.0 7.0"
  "ml_dtypes 0.6.0 0.2"
)

python_headers_ok() {
  python3 -c 'import os, sysconfig; exit(not os.path.isfile(sysconfig.get_paths()["include"] + "/Python.h"))'
}

# Creates the virtual environment $python_venv if needed (no pip of its own: it borrows the system's, so
# that Debian's python3 needs no python3-venv) and installs the missing PYTHON_PACKAGES into it.
setup_python_venv() {
  [ -n "$python_venv" ] || return 0
  if [ ! -x "$python_venv/bin/python" ]; then
    python3 -m venv --system-site-packages --without-pip "$python_venv"
  fi
  local wanted
  wanted=$("$python_venv/bin/python" -c '
import importlib.metadata, re, sys
release = lambda version: tuple(int(part) for part in re.findall(r"[0-9]+", version)[:2])
for entry in sys.argv[1:]:
    name, pin, minimum = entry.split()
    try:
        if release(importlib.metadata.version(name)) >= release(minimum):
            continue
    except importlib.metadata.PackageNotFoundError:
        pass
    print(name + "==" + pin)
' "${PYTHON_PACKAGES[@]}")
  if [ -n "$wanted" ]; then
    log "installing into $python_venv: $(echo $wanted)"
    # shellcheck disable=SC2086  # one requirement per word
    "$python_venv/bin/python" -m pip install --quiet --disable-pip-version-check $wanted
  fi
}

missing_packages=()
cmake_ok || missing_packages+=(cmake)
command -v ninja > /dev/null || missing_packages+=(ninja-build)
gxx_ok || missing_packages+=(g++)
if [ "$want_tests" -eq 1 ]; then
  gtest_ok || missing_packages+=(libgtest-dev)
fi
if [ -n "$python_venv" ]; then
  command -v python3 > /dev/null || missing_packages+=(python3)
  python3 -m pip --version > /dev/null 2>&1 || missing_packages+=(python3-pip)
  python_headers_ok 2> /dev/null || missing_packages+=(python3-dev)
fi

if [ "${#missing_packages[@]}" -eq 0 ]; then
  setup_python_venv
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
setup_python_venv
log "done"
