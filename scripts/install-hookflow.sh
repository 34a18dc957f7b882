#!/usr/bin/env bash
# Installs the action's hookflow binary (the trigger runtime alone: `hookflow run`, `replay`,
# `validate`, `sign`): the release archive hookflow-action-<target>.tar.gz for this runner,
# checked against its published SHA-256; a build of the action's own source with cargo
# (scripts/build-action) only when asked (`version: source`) or when no release can be had.
#
# Which release (the action's `version` input, HOOKFLOW_VERSION):
#   auto (default)  the release of the action's own source: the version in its Cargo.toml, so
#                   `uses: …@v0.1.0` and the moving `uses: …@v0` get the binary of that code; a
#                   branch or SHA whose version is not released yet gets the latest release, with a
#                   notice
#   latest          the latest release
#   vX.Y.Z          that release
#   source          build the action's source with cargo
#
# Environment: HOOKFLOW_VERSION, HOOKFLOW_ACTION_PATH, HOOKFLOW_ACTION_REPOSITORY,
# HOOKFLOW_ACTION_REF, RUNNER_OS, RUNNER_ARCH, RUNNER_TEMP, GITHUB_PATH, and
# HOOKFLOW_RELEASES_URL (default https://github.com/<repository>/releases: a mirror serving
# download/<tag>/<asset> and latest/download/<asset>).
set -euo pipefail

version="${HOOKFLOW_VERSION:-auto}"
action_path="${HOOKFLOW_ACTION_PATH:?HOOKFLOW_ACTION_PATH must be set}"
repository="${HOOKFLOW_ACTION_REPOSITORY:-}"
ref="${HOOKFLOW_ACTION_REF:-}"
root="${RUNNER_TEMP:-/tmp}/hookflow"
mkdir -p "$root/bin"

# The version of the action's own source.
source_version() {
  sed -n 's/^version = "\([0-9][^"]*\)"/v\1/p' "$action_path/Cargo.toml" | head -n 1
}

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

base="${HOOKFLOW_RELEASES_URL:-https://github.com/${repository}/releases}"
base="${base%/}"

# Downloads and checks one release's archive ($1: the URL of the folder holding it).
install_from() {
  local folder="$1" label="$2"
  local archive="hookflow-action-${target}.tar.gz"
  local work="$root/download"
  mkdir -p "$work"
  echo "hookflow: downloading ${folder}/${archive}"
  if ! curl -fsSL --retry 3 -o "$work/$archive" "$folder/$archive" ||
    ! curl -fsSL --retry 3 -o "$work/$archive.sha256" "$folder/$archive.sha256"; then
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
  echo "hookflow: installed release ${label} (${target})"
}

build_source() {
  if ! command -v cargo >/dev/null 2>&1; then
    echo "::error::no hookflow release to download and no cargo to build one; set the action's version input to a release tag"
    exit 1
  fi
  echo "hookflow: building from ${action_path}"
  built="$(TARGET_DIR="$root/target" bash "$action_path/scripts/build-action")"
  cp "$built" "$root/bin/"
}

installed=""
if [ "$version" != "source" ] && [ -n "$target" ] && { [ -n "$repository" ] || [ -n "${HOOKFLOW_RELEASES_URL:-}" ]; }; then
  case "$version" in
    auto)
      own="$(source_version)"
      if [ -n "$own" ] && install_from "$base/download/$own" "$own"; then
        installed=1
      else
        echo "::notice::hookflow: the action's ref ${ref:-?} (version ${own:-unknown}) has no release yet; installing the latest release. Pin a release (uses: ${repository:-OWNER/hookflow}@v0) to choose."
        install_from "$base/latest/download" "latest" && installed=1
      fi
      ;;
    latest)
      install_from "$base/latest/download" "latest" && installed=1
      ;;
    *)
      install_from "$base/download/$version" "$version" && installed=1
      ;;
  esac
  if [ -z "$installed" ]; then
    echo "::warning::hookflow ${version} has no release archive for ${target}; building from source"
  fi
fi
[ -n "$installed" ] || build_source

echo "$root/bin" >>"${GITHUB_PATH:-/dev/null}"
"$root/bin/hookflow" --version
