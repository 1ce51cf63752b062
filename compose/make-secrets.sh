#!/usr/bin/env sh
# Writes compose/secrets.env (git-ignored): the API's token key, random per checkout. Only the
# orchestrator service reads it (env_file), so the model workers that decode untrusted audio
# never hold a key that mints tokens; roar refuses example keys outside `roar dev`.
# Run once before `docker compose up`; an existing file is kept (its tokens stay valid).
set -eu
out="${1:-$(dirname "$0")/secrets.env}"
if [ -e "$out" ]; then
  echo "$out exists: kept" >&2
  exit 0
fi
key=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')
umask 077
printf 'ROAR_AUTH__JWT_SECRET=%s\n' "$key" >"$out"
echo "wrote $out" >&2
