#!/usr/bin/env bash
# Installs the action's hookflow binary (the trigger runtime alone: `hookflow run`, `replay`,
# `validate`, `sign`): the release archive hookflow-action-<target>.tar.gz for this runner,
# checked against its published SHA-256, or else a build of the action's own source with cargo
# (scripts/build-action).
#
# Environment: HOOKFLOW_VERSION (auto|source|vX.Y.Z), HOOKFLOW_ACTION_PATH,
# HOOKFLOW_ACTION_REPOSITORY, HOOKFLOW_ACTION_REF, RUNNER_OS, RUNNER_ARCH, RUNNER_TEMP, GITHUB_PATH,
# and HOOKFLOW_RELEASES_URL (default https://github.com/<repository>/releases/download: a mirror).
set -euo pipefail

version="${HOOKFLOW_VERSION:-auto}"
action_path="${HOOKFLOW_ACTION_PATH:?HOOKFLOW_ACTION_PATH must be set}"
repository="${HOOKFLOW_ACTION_REPOSITORY:-}"
ref="${HOOKFLOW_ACTION_REF:-}"
root="${RUNNER_TEMP:-/tmp}/hookflow"
mkdir -p "$root/bin"

if [ "$version" = "auto" ]; then
  case "$ref" in
    v[0-9]*) version="$ref" ;;
    *) version="source" ;;
  esac
fi

case "${RUNNER_OS:-}-${RUNNER_ARCH:-}" in
  Linux-X64) target="x86_64-unknown-linux-musl" ;;
  Linux-ARM64) target="aarch64-unknown-linux-musl" ;;
  macOS-X64) target="x86_64-apple-darwin" ;;
  macOS-ARM64) target="aarch64-apple-darwin" ;;
  Windows-X64) target="x86_64-pc-windows-msvc" ;;
  *) target="" ;;
esac

sha256() {
  if command -v sha256sum >/dev/null 2>&1; then
    sha256sum "$1" | cut -d' ' -f1
  else
    shasum -a 256 "$1" | cut -d' ' -f1
  fi
}

install_release() {
  local archive="hookflow-action-${target}.tar.gz"
  local base="${HOOKFLOW_RELEASES_URL:-https://github.com/${repository}/releases/download}"
  local url="${base}/${version}/${archive}"
  local work="$root/download"
  mkdir -p "$work"
  echo "hookflow: downloading ${url}"
  if ! curl -fsSL --retry 3 -o "$work/$archive" "$url" ||
    ! curl -fsSL --retry 3 -o "$work/$archive.sha256" "$url.sha256"; then
    echo "::warning::hookflow ${version} has no release archive for ${target}; building from source"
    return 1
  fi
  local expected actual
  expected="$(cut -d' ' -f1 <"$work/$archive.sha256")"
  actual="$(sha256 "$work/$archive")"
  if [ "$expected" != "$actual" ]; then
    echo "::error::checksum mismatch for ${archive}: expected ${expected}, got ${actual}; refusing to install"
    exit 1
  fi
  tar -xzf "$work/$archive" -C "$root/bin"
}

if [ "$version" != "source" ] && [ -n "$target" ] && [ -n "$repository" ] && install_release; then
  echo "hookflow: installed release ${version} (${target})"
else
  if ! command -v cargo >/dev/null 2>&1; then
    echo "::error::no hookflow release to download and no cargo to build one; set the action's version input to a release tag"
    exit 1
  fi
  echo "hookflow: building from ${action_path}"
  built="$(TARGET_DIR="$root/target" bash "$action_path/scripts/build-action")"
  cp "$built" "$root/bin/"
fi

echo "$root/bin" >>"${GITHUB_PATH:-/dev/null}"
"$root/bin/hookflow" --version
