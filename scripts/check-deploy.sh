#!/usr/bin/env bash
# Offline checks of the deployment files (scripts/check.sh runs it; docs/operations.md says
# what each covers): `kubectl kustomize k8s/` renders and every object validates against the
# Kubernetes JSON schemas (strict) or our KEDA ScaledObject schema, with the references between
# objects checked; the Prometheus alert rules load and pass their unit tests (promtool); both
# compose files validate (docker-compose config); the dashboard and the alerts use only metrics
# roar declares. Nothing here needs a cluster, a daemon or a container registry.
# Cost on a fresh machine: ~25 MB of Debian packages (prometheus for promtool, docker-compose)
# and ~140 MB of PyPI wheels (kubernetes-validate ships every version's schemas), about a minute;
# the checks themselves take seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v promtool >/dev/null 2>&1 || ! command -v docker-compose >/dev/null 2>&1; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends prometheus docker-compose >/dev/null
fi
command -v kubectl >/dev/null 2>&1 || {
  echo "kubectl is missing (its kustomize renders k8s/ offline)" >&2
  exit 1
}
# A virtual environment of its own, so the validator's pins touch no other Python.
venv=.ci/venv-deploy
if ! "$venv/bin/python" -c 'import kubernetes_validate' >/dev/null 2>&1; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet 'kubernetes-validate==1.37.0'
fi

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

echo "== k8s: kustomize + schemas"
kubectl kustomize k8s/ >"$out/k8s.yaml"
"$venv/bin/python" scripts/deploy/validate.py k8s "$out/k8s.yaml"

echo "== monitoring: promtool"
promtool check rules monitoring/alerts.yml
promtool test rules monitoring/alerts.test.yml
"$venv/bin/python" scripts/deploy/validate.py monitoring

echo "== compose: docker-compose config"
# The orchestrator's env_file is generated per checkout (git-ignored); config needs it present.
compose/make-secrets.sh
docker-compose -f compose/docker-compose.yml config -q
docker-compose -f compose/docker-compose.yml -f compose/docker-compose.gpu.yml config -q
echo "deployment files valid"
