# Shared by scripts/run.sh and scripts/test.sh: idempotent installs and environment.
# shellcheck shell=bash

AIRTEXT_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/airtext/target}"
# Incremental artefacts of every test binary filled tens of GB of disk; a one-shot run does not
# need them.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf '\033[1;31merror: %s\033[0m\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# apt_install PKG… — installs the Debian/Ubuntu packages that are missing, and only those.
apt_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  command -v apt-get >/dev/null || die "missing packages (${missing[*]}) and no apt-get to install them"
  say "installing ${missing[*]}"
  if [ ! -f /tmp/.airtext-apt-updated ]; then
    as_root apt-get -o DPkg::Lock::Timeout=600 update -qq && touch /tmp/.airtext-apt-updated
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
    --no-install-recommends "${missing[@]}" >/dev/null
}

# pip_install PKG… — installs the Python packages that are missing (by import check of the
# distribution name through pip).
pip_install() {
  local missing=()
  for pkg in "$@"; do
    python3 -m pip show -q "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  say "installing Python packages ${missing[*]}"
  python3 -m pip install -q --disable-pip-version-check "${missing[@]}" \
    || python3 -m pip install -q --disable-pip-version-check --break-system-packages "${missing[@]}"
}

need_rust() {
  command -v cargo >/dev/null || die "Rust is not installed: install it with rustup (https://rustup.rs), then run this again"
}

# The build needs a C compiler (bundled SQLite, ring) and pkg-config.
need_build_tools() {
  apt_install build-essential pkg-config curl ca-certificates python3 python3-pip
}

# Node.js 20 or newer with npm (Vite 8 needs it).
need_node() {
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    apt_install nodejs npm
  fi
  local major
  major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
  [ "$major" -ge 20 ] || die "Node.js $major is too old: the UI needs Node.js 20 or newer (install it from NodeSource or nvm), then run this again"
}
