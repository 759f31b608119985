#!/usr/bin/env bash
# The step of the myaas action (action.yml): a thin call to `kubectl myaas ci github`, which reads
# the pull request from $GITHUB_EVENT_PATH and writes $GITHUB_OUTPUT and $GITHUB_ENV itself.
set -euo pipefail

plugin=${MYAAS_PLUGIN:-kubectl-myaas}
if ! command -v "$plugin" >/dev/null 2>&1; then
  # Runners without the plugin get the release binary, kept for the job in its temp directory.
  os=$(uname -s | tr '[:upper:]' '[:lower:]')
  arch=$(uname -m)
  case "$arch" in x86_64) arch=amd64 ;; aarch64) arch=arm64 ;; esac
  dir="${RUNNER_TEMP:-$(mktemp -d)}/kubectl-myaas"
  mkdir -p "$dir"
  curl -fsSL "https://github.com/myaas/myaas/releases/download/${INPUT_PLUGIN_VERSION}/kubectl-myaas_${INPUT_PLUGIN_VERSION}_${os}_${arch}.tar.gz" |
    tar -xz -C "$dir" kubectl-myaas
  plugin="$dir/kubectl-myaas"
fi

args=()
if [[ -n ${INPUT_NAMESPACE:-} ]]; then args+=(--namespace "$INPUT_NAMESPACE"); fi
if [[ -n ${INPUT_NAME:-} ]]; then args+=(--name "$INPUT_NAME"); fi
if [[ -n ${INPUT_PREFIX:-} ]]; then args+=(--prefix "$INPUT_PREFIX"); fi

case "${INPUT_MODE:-}" in
create)
  exec "$plugin" ci github create "${args[@]}" \
    --template "${INPUT_TEMPLATE:?the template input is required in create mode}" \
    --ttl "${INPUT_TTL:-24h}" --timeout "${INPUT_TIMEOUT:-5m}" --export-env="${INPUT_EXPORT_ENV:-true}"
  ;;
delete)
  exec "$plugin" ci github delete "${args[@]}" --timeout "${INPUT_TIMEOUT:-5m}"
  ;;
*)
  echo "::error::mode must be create or delete, not '${INPUT_MODE:-}'"
  exit 1
  ;;
esac
