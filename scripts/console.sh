#!/usr/bin/env bash
# Builds the web console (console/) into console/dist/, which the lab binary embeds. Idempotent: `npm ci` only when
# node_modules is missing or older than package-lock.json, `npm run build` only when dist is missing or older than a
# source. Prints what it did. Usage: bash scripts/console.sh [--force]
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dir="$root/console"
say() { printf 'console: %s\n' "$*" >&2; }
force=0
[ "${1:-}" = "--force" ] && force=1

if ! command -v npm >/dev/null 2>&1 || ! command -v node >/dev/null 2>&1; then
  say "npm/node not found: install Node.js 20.19+ with npm (Debian: apt-get install nodejs npm, or https://nodejs.org)"
  exit 1
fi

cd "$dir"
# npm ci writes node_modules/.package-lock.json; older than the committed lock file means the lock changed since.
stamp=node_modules/.package-lock.json
if [ "$force" = 1 ] || [ ! -f "$stamp" ] || [ package-lock.json -nt "$stamp" ]; then
  say "installing Node packages (npm ci)"
  npm ci --no-audit --no-fund --loglevel=error
else
  say "Node packages up to date"
fi

# Rebuild when any source is newer than the built bundle (or the bundle is missing).
out=dist/assets/app.js
newer=""
if [ -f "$out" ] && [ -f dist/assets/app.css ] && [ -f dist/index.html ]; then
  newer=$(find src index.html vite.config.ts tsconfig.json package.json package-lock.json -newer "$out" -print -quit)
else
  newer="(no dist)"
fi
if [ "$force" = 1 ] || [ -n "$newer" ]; then
  say "building console/dist (npm run build; changed: ${newer:-forced})"
  npm run --silent build
  say "built $(du -ch dist/index.html dist/assets/app.js dist/assets/app.css | tail -1 | cut -f1) in console/dist"
else
  say "console/dist up to date"
fi
