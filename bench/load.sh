#!/usr/bin/env bash
# Load on the portal's busiest reads with 1,000 submissions of one researcher, against a running
# stack (`make up`): the list and detail pages and their REST API twins, with wrk. Prints the
# requests per second and the 50th/95th/99th percentile latency of each.
#   M2D_PORTAL_URL     the portal (default http://127.0.0.1:8000, as `make up` starts it)
#   BENCH_LOAD_SECONDS duration per URL (default 15)   BENCH_LOAD_CONNECTIONS (default 8)
source "$(dirname "$0")/../scripts/lib.sh"
cd "$REPO_ROOT"
URL="${M2D_PORTAL_URL:-http://127.0.0.1:8000}"
SECONDS_EACH="${BENCH_LOAD_SECONDS:-15}"
CONNECTIONS="${BENCH_LOAD_CONNECTIONS:-8}"

command -v wrk >/dev/null || apt_ensure wrk
curl -fsS -o /dev/null "$URL/accounts/login/" || die "no portal answers at $URL: start it with \`make up\`"
seed=$(.venv/bin/python bench/load_seed.py) || die "seeding the portal failed"
eval "$seed"

printf '%-34s %s\n' "what" "figures"
load() {
    local name=$1 path=$2; shift 2
    local line
    line=$(wrk -t2 -c"$CONNECTIONS" -d"${SECONDS_EACH}s" -s bench/load.lua "$@" "$URL$path" | grep '^LOAD ')
    printf '%-34s %s\n' "$name" "${line#LOAD }"
}
load "list page (50 of 1,000 rows)" /submissions/ -H "Cookie: sessionid=$M2D_LOAD_SESSION"
load "detail page" "/submissions/$M2D_LOAD_SUBMISSION/" -H "Cookie: sessionid=$M2D_LOAD_SESSION"
load "API list (page of 50)" /api/v1/submissions/ -H "Authorization: Token $M2D_LOAD_TOKEN"
load "API detail" "/api/v1/submissions/$M2D_LOAD_SUBMISSION/" -H "Authorization: Token $M2D_LOAD_TOKEN"
