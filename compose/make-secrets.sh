#!/usr/bin/env sh
# Writes compose/secrets.env and compose/webhooks.env (both git-ignored), random per checkout:
# secrets.env holds the API's token key and the key that seals webhook signing secrets, and
# only the orchestrator reads it (env_file), so the model workers that decode untrusted audio
# never hold a key that mints tokens; webhooks.env holds the sealing key alone, for the webhook
# dispatcher. roar refuses example keys outside `roar dev`.
# Run once before `docker compose up`; existing keys are kept (tokens and sealed secrets stay
# valid), a missing one is added.
set -eu
out="${1:-$(dirname "$0")/secrets.env}"
hooks="$(dirname "$out")/webhooks.env"
random() { od -An -N32 -tx1 /dev/urandom | tr -d ' \n'; }
umask 077
if [ -e "$out" ]; then
  echo "$out exists: kept" >&2
else
  printf 'ROAR_AUTH__JWT_SECRET=%s\n' "$(random)" >"$out"
  echo "wrote $out" >&2
fi
if ! grep -q '^ROAR_WEBHOOKS__SECRET_KEY=' "$out"; then
  printf 'ROAR_WEBHOOKS__SECRET_KEY=%s\n' "$(random)" >>"$out"
fi
# The dispatcher's copy is always the API's key: the one opens what the other sealed.
grep '^ROAR_WEBHOOKS__SECRET_KEY=' "$out" >"$hooks.tmp"
if [ -e "$hooks" ] && cmp -s "$hooks" "$hooks.tmp"; then
  rm "$hooks.tmp"
else
  mv "$hooks.tmp" "$hooks"
  echo "wrote $hooks" >&2
fi
