#!/usr/bin/env bash
# System packages the tests use when present, installed where this machine allows it:
#   bubblewrap: the sandbox that model-generated code runs in (without it, code evaluation is refused
#               unless a config sets eval.allow_weak_isolation, and the tests that need it skip);
#   chromium:   the leaderboard page is tested in a real headless browser (the test skips without it);
#   slurm-wlm, munge: a single-node SLURM cluster (.ci/slurm-cluster.sh) for the `launch --executor slurm`
#               tests (they skip, saying why, without it).
# Used by `make setup` and by .ci/run. Never fails: when it cannot install, it says why and goes on.
# ENTRODROP_SKIP_SYSTEM_DEPS=1 skips it (e.g. to test the fresh-machine case on a machine that has them).
set -uo pipefail
say() { echo "system-deps: $*"; }
if [ "${ENTRODROP_SKIP_SYSTEM_DEPS:-0}" = 1 ]; then
  say "skipped (ENTRODROP_SKIP_SYSTEM_DEPS=1)"; exit 0
fi
need=()
command -v bwrap >/dev/null 2>&1 || need+=(bubblewrap)
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 \
  || command -v google-chrome >/dev/null 2>&1 || need+=(chromium)
# The daemons live in /usr/sbin, which a non-root PATH may lack.
{ command -v slurmctld || [ -x /usr/sbin/slurmctld ]; } >/dev/null 2>&1 || need+=(slurm-wlm)
{ command -v munged || [ -x /usr/sbin/munged ]; } >/dev/null 2>&1 || need+=(munge)
[ ${#need[@]} -eq 0 ] && exit 0
why=""
if ! command -v apt-get >/dev/null 2>&1; then
  why="no apt-get on this machine"
elif [ "$(id -u)" != 0 ]; then
  why="not root (run: sudo apt-get install ${need[*]})"
fi
if [ -n "$why" ]; then
  say "cannot install ${need[*]}: $why; the tests that need them skip and say so"; exit 0
fi
say "installing ${need[*]} with apt-get"
log=$(mktemp)
if DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >"$log" 2>&1 \
   || { DEBIAN_FRONTEND=noninteractive apt-get update -q >>"$log" 2>&1 \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >>"$log" 2>&1; }; then
  say "installed ${need[*]}"
else
  say "apt-get could not install ${need[*]} (last lines below); the tests that need them skip and say so"
  tail -n 5 "$log" | sed 's/^/system-deps:   /'
fi
rm -f "$log"
exit 0
