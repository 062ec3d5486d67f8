#!/usr/bin/env bash
# Builds OpenTofu and the huaweicloud Terraform provider from the Go module proxy, once per
# version per machine, and prints where they are:
#
#   TOFU=/…/kafka-tasks/tofu/tofu-v1.10.10/tofu
#   PROVIDER_DIR=/…/kafka-tasks/tofu/provider-huaweicloud-v1.95.0   (for dev_overrides)
#
# Neither can be installed with `go install …@version`: the provider's go.mod has `replace`
# lines, and Terraform itself is BUSL (OpenTofu, MPL-2.0, is the CLI used). So each module is
# downloaded with `go mod download`, copied out of the read-only module cache into a temporary
# directory and built there with -trimpath and default flags. Build times go to stderr.
#
# The versions are pinned (the proxy may refuse to list the provider's versions; it serves a pinned
# one). Nothing built or downloaded belongs in the repository.
set -euo pipefail

TOFU_VERSION="${KT_TOFU_VERSION:-v1.10.10}"
PROVIDER_VERSION="${KT_PROVIDER_VERSION:-v1.95.0}"

CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/kafka-tasks/tofu"
TOFU_BIN="$CACHE/tofu-$TOFU_VERSION/tofu"
PROVIDER_DIR="$CACHE/provider-huaweicloud-$PROVIDER_VERSION"
PROVIDER_BIN="$PROVIDER_DIR/terraform-provider-huaweicloud"

log() { printf '%s\n' "$*" >&2; }

# Copies a module version out of the read-only module cache into $1, writable.
module_source() {
  local dest="$1" module="$2" version="$3" json
  json="$(go mod download -json "$module@$version")" || {
    log "the Go proxy does not serve $module@$version: $(jq -r '.Error' <<<"$json")"
    return 1
  }
  cp -r "$(jq -r '.Dir' <<<"$json")" "$dest"
  chmod -R u+w "$dest"
}

timed_build() {
  local what="$1" src="$2" out="$3" pkg="$4" start
  start=$(date +%s)
  (cd "$src" && GOFLAGS=-mod=mod go build -trimpath -o "$out.tmp" "$pkg")
  mv "$out.tmp" "$out"
  log "built $what in $(( $(date +%s) - start )) s: $out"
}

build_tofu() {
  local tmp
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' RETURN
  log "building OpenTofu $TOFU_VERSION (first use on this machine)"
  module_source "$tmp/src" github.com/opentofu/opentofu "$TOFU_VERSION"
  mkdir -p "$(dirname "$TOFU_BIN")"
  timed_build "OpenTofu $TOFU_VERSION" "$tmp/src" "$TOFU_BIN" ./cmd/tofu
}

build_provider() {
  local tmp
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' RETURN
  log "building terraform-provider-huaweicloud $PROVIDER_VERSION (first use on this machine; large)"
  module_source "$tmp/src" github.com/huaweicloud/terraform-provider-huaweicloud "$PROVIDER_VERSION"
  mkdir -p "$PROVIDER_DIR"
  timed_build "terraform-provider-huaweicloud $PROVIDER_VERSION" "$tmp/src" "$PROVIDER_BIN" .
}

[ -x "$TOFU_BIN" ] || build_tofu
[ -x "$PROVIDER_BIN" ] || build_provider
echo "TOFU=$TOFU_BIN"
echo "PROVIDER_DIR=$PROVIDER_DIR"
