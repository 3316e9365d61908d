#!/usr/bin/env bash
# Drives the `functions` CLI the way a shell script would, against a server that is
# already running: deploy, invoke, list, rollback, env, logs, metrics, status, delete,
# and the exit code of every kind of failure.
#
#   FUNCTIONS_BIN=target/debug/functions FUNCTIONS_SOCKET=data/functions.sock bash tests/cli.sh
#
# Prints one `ok - <what>` or `not ok - <what>` line per check (TAP style) and exits
# non-zero when any check failed. Needs bash, python3 and a server it may deploy to; its
# functions are all named sh-*, and any of that name is deleted before and after.
set -euo pipefail
shopt -s lastpipe

: "${FUNCTIONS_BIN:?set FUNCTIONS_BIN to the functions binary}"
: "${FUNCTIONS_SOCKET:?set FUNCTIONS_SOCKET to the socket of a running server}"
export FUNCTIONS_SOCKET

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=0
checks=0

functions() { "$FUNCTIONS_BIN" "$@"; }

pass() {
    checks=$((checks + 1))
    echo "ok - $1"
}

# fail WHAT DETAIL...: reports a failed check with what the command printed.
fail() {
    checks=$((checks + 1))
    failures=$((failures + 1))
    echo "not ok - $1"
    shift
    printf '#   %s\n' "$@" "stdout: $(head -c 2000 "$work/out")" "stderr: $(head -c 2000 "$work/err")"
}

# expect_out WHAT EXPECTED ARGS...: the command succeeds and prints EXPECTED.
expect_out() {
    local what=$1 expected=$2 rc=0 got
    shift 2
    functions "$@" >"$work/out" 2>"$work/err" || rc=$?
    got=$(cat "$work/out")
    if [[ $rc -eq 0 && $got == "$expected" ]]; then
        pass "$what"
    else
        fail "$what" "exit code: $rc" "expected: $expected"
    fi
}

# expect_code WHAT CODE ARGS...: the command exits with CODE and, when it fails, says
# why on stderr with the `functions: ` prefix.
expect_code() {
    local what=$1 code=$2 rc=0
    shift 2
    functions "$@" >"$work/out" 2>"$work/err" || rc=$?
    if [[ $rc -eq $code ]] && { [[ $code -eq 0 ]] || grep -q '^functions: ' "$work/err"; }; then
        pass "$what"
    else
        fail "$what" "exit code: $rc, expected $code"
    fi
}

# expect_json WHAT PYTHON-CONDITION ARGS...: the command succeeds and prints one line
# of JSON `d` for which the condition holds.
expect_json() {
    local what=$1 condition=$2 rc=0
    shift 2
    functions "$@" >"$work/out" 2>"$work/err" || rc=$?
    if [[ $rc -eq 0 && $(wc -l <"$work/out") -eq 1 ]] &&
        python3 -c "import json, sys
d = json.load(sys.stdin)
sys.exit(0 if ($condition) else 1)" <"$work/out" 2>>"$work/err"; then
        pass "$what"
    else
        fail "$what" "exit code: $rc" "condition: $condition"
    fi
}

# The functions under test, all named sh-*: removed before and after the checks.
clean_up() {
    for name in echo greet status hang broken later; do
        functions delete "sh-$name" >/dev/null 2>&1 || true
    done
}
clean_up
mkdir -p "$work/v2"
cat >"$work/echo.ts" <<'TS'
export default async function (request: Request): Promise<Response> {
  const url = new URL(request.url);
  const body = await request.text();
  console.log(`echo saw ${JSON.stringify(body)}`);
  return new Response(`v1 ${request.method} ${url.pathname}${url.search} ${body}`);
}
TS
sed 's/`v1 /`v2 /' "$work/echo.ts" >"$work/v2/echo.ts"
cat >"$work/status.ts" <<'TS'
export default (request: Request) =>
  new Response("status\n", { status: Number(new URL(request.url).searchParams.get("code")) });
TS
cat >"$work/greet.ts" <<'TS'
export default () => new Response(process.env.GREETING ?? "no greeting");
TS
cat >"$work/hang.ts" <<'TS'
export default () => new Promise<Response>(() => {});
TS
echo 'export default () => new Response("x" +;' >"$work/broken.ts"
printf 'from a file' >"$work/body.txt"

# Deploy and invoke.
expect_json "deploy sh-echo prints its first version" \
    'd["name"] == "sh-echo" and d["version"] == 1 and d["unchanged"] is False' \
    deploy sh-echo "$work/echo.ts" --json
printf 'hello from stdin' | expect_out "invoke --data - sends stdin as the body" \
    "v1 POST /functions/sh-echo hello from stdin" invoke sh-echo --data -
expect_out "invoke --method --path --data STR" "v1 PUT /functions/sh-echo/tasks/1?x=1 abc" \
    invoke sh-echo --method put --path '/tasks/1?x=1' --data abc
expect_out "invoke --data @FILE sends the file" "v1 POST /functions/sh-echo from a file" \
    invoke sh-echo --data "@$work/body.txt"
expect_out "invoke without a body is a GET" "v1 GET /functions/sh-echo " invoke sh-echo
expect_out "deploying the same source again changes nothing" "sh-echo: version 1 unchanged" \
    deploy sh-echo "$work/echo.ts"
expect_json "list --json names echo as serving" \
    'any(f["name"] == "sh-echo" and f["state"] == "serving" and f["active_version"] == 1
         for f in d["functions"])' \
    list --json
if functions list >"$work/out" 2>"$work/err" &&
    head -n 1 "$work/out" | grep -q '^NAME ' && grep -q '^sh-echo ' "$work/out"; then
    pass "list prints a table"
else
    fail "list prints a table"
fi

# A second version, then back to the first.
expect_json "deploy a second version" 'd["version"] == 2 and d["unchanged"] is False' \
    deploy sh-echo "$work/v2/echo.ts" --json
expect_out "the second version answers" "v2 GET /functions/sh-echo " invoke sh-echo
expect_code "rollback succeeds" 0 rollback sh-echo
expect_out "after rollback the first version answers" "v1 GET /functions/sh-echo " invoke sh-echo
expect_json "info --json shows the active version" \
    'd["active_version"] == 1 and d["latest_version"] == 2 and len(d["versions"]) == 2' \
    info sh-echo --json
expect_code "rollback to a version that does not exist is not found" 4 rollback sh-echo --to 99

# Environment.
expect_code "deploy sh-greet" 0 deploy sh-greet "$work/greet.ts"
expect_out "without the variable" "no greeting" invoke sh-greet
expect_code "env set" 0 env sh-greet set GREETING=bonjour OTHER=1
expect_out "invoke sees the value env set stored" "bonjour" invoke sh-greet
expect_out "env list hides the values" $'GREETING=********\nOTHER=********' env sh-greet list
expect_out "env list --reveal shows them" $'GREETING=bonjour\nOTHER=1' env sh-greet list --reveal
expect_json "env list --json hides the values" \
    'd["env"] == {"GREETING": "********", "OTHER": "********"} and d["revealed"] is False' \
    env sh-greet list --json
expect_json "env unset" 'd["keys"] == ["GREETING"]' env sh-greet unset OTHER --json
expect_code "deploy --env replaces the environment" 0 \
    deploy sh-greet "$work/greet.ts" --env GREETING=hallo
expect_out "invoke sees the deployed --env" "hallo" invoke sh-greet

# Observability.
expect_json "logs --json holds what the function logged" \
    'any(l["message"] == "echo saw \"hello from stdin\"" and l["function"] == "sh-echo"
         for l in d["logs"])' \
    logs sh-echo --json
expect_json "logs --limit" 'len(d["logs"]) == 1' logs sh-echo --limit 1 --json
expect_json "metrics --json counts invocations" \
    'd["functions"]["sh-echo"]["invocations"] >= 5' metrics --json
expect_json "metrics NAME --json" 'list(d["functions"]) == ["sh-echo"]' metrics sh-echo --json
expect_json "status --json parses" \
    'd["functions"] >= 2 and d["pid"] > 0 and d["socket"].endswith(".sock")' status --json

# Exit codes.
expect_code "deploy status" 0 deploy sh-status "$work/status.ts"
expect_code "function answering 404 exits 3" 3 invoke sh-status --path '?code=404'
expect_code "function answering 500 exits 3" 3 invoke sh-status --path '?code=500'
expect_code "function answering 201 exits 0" 0 invoke sh-status --path '?code=201'
expect_code "deploy with --max-response-size 4" 0 deploy sh-status "$work/status.ts" \
    --max-response-size 4
expect_code "a body over --max-response-size exits 3" 3 invoke sh-status --path '?code=200'
if grep -q response_too_large "$work/out" "$work/err"; then
    pass "a body over --max-response-size says response_too_large"
else
    fail "a body over --max-response-size says response_too_large" "$(cat "$work/out" "$work/err")"
fi
expect_code "unknown function exits 4" 4 invoke sh-nope
expect_code "info of an unknown function exits 4" 4 info sh-nope
expect_code "bad flag exits 2" 2 list --bogus
expect_code "bad flag value exits 2" 2 deploy sh-echo "$work/echo.ts" --timeout soon
expect_code "bad --path exits 2" 2 invoke sh-echo --path tasks
expect_code "invalid function name exits 2" 2 invoke Not_Valid
FUNCTIONS_SOCKET="$work/nobody.sock" \
    expect_code "unreachable socket (FUNCTIONS_SOCKET) exits 5" 5 status
expect_code "unreachable socket (--socket) exits 5" 5 status --socket "$work/nobody.sock"
expect_code "deploy sh-hang --timeout 1s" 0 deploy sh-hang "$work/hang.ts" --timeout 1s
expect_code "a function that hangs past its timeout exits 6" 6 invoke sh-hang
expect_code "a build error exits 1" 1 deploy sh-broken "$work/broken.ts"
if grep -q '^functions: failed to build function sh-broken' "$work/err"; then
    pass "a build error shows the compiler's message"
else
    fail "a build error shows the compiler's message"
fi

# Register and delete.
expect_json "register" 'd == {"name": "sh-later", "registered": True}' register sh-later --json
expect_code "a registered function without code is not found" 4 invoke sh-later
expect_json "delete" 'd == {"name": "sh-echo", "deleted": True}' delete sh-echo --json
expect_code "invoke after delete exits 4" 4 invoke sh-echo
clean_up

echo "# $checks checks, $failures failed"
[[ $failures -eq 0 ]]
