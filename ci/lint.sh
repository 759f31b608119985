#!/usr/bin/env bash
# make lint-ci: actionlint on the example workflows and on the action's metadata, shellcheck on
# the CI scripts. actionlint checks a composite action's inputs and outputs only through a
# workflow that uses it locally, so one is written next to a copy of the action.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
actionlint=${ACTIONLINT:-actionlint}

"$actionlint" "$root"/ci/github/examples/*.yml

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/.github/workflows" "$tmp/ci"
cp -r "$root/ci/github" "$tmp/ci/github"
rm -rf "$tmp/ci/github/examples"
cat >"$tmp/.github/workflows/uses-the-action.yml" <<'YAML'
on: pull_request
jobs:
  db:
    runs-on: ubuntu-latest
    steps:
      - id: db
        uses: ./ci/github
        with:
          mode: create
          template: shop
          namespace: ci
          ttl: 2h
          timeout: 5m
          name: pr-1
          prefix: shop-
          export-env: "true"
          plugin-version: v0.1.0
      - run: echo "$NAME $HOST $PORT $USERNAME $DATABASE"
        env:
          NAME: ${{ steps.db.outputs.name }}
          HOST: ${{ steps.db.outputs.host }}
          PORT: ${{ steps.db.outputs.port }}
          USERNAME: ${{ steps.db.outputs.username }}
          PASSWORD: ${{ steps.db.outputs.password }}
          DATABASE: ${{ steps.db.outputs.database }}
          URI: ${{ steps.db.outputs.uri }}
          JDBC: ${{ steps.db.outputs.jdbc-uri }}
      - uses: ./ci/github
        with:
          mode: delete
YAML
(cd "$tmp" && git init -q . && "$actionlint")

shellcheck "$root"/ci/*.sh "$root"/ci/github/*.sh "$root"/cmd/kubectl-myaas/krew/*.sh
echo "ci: actionlint and shellcheck passed"
