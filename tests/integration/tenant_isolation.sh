#!/bin/bash
# Tenant routing and isolation against a real ClickHouse: the DDL and users that
# `tapline schema ddl` and `tapline schema users` generate for
# tests/integration/site-tenants.yaml (tenants acme and globex, each routed to its own
# database by the query's database) are installed in a private server started here (the
# users file as users.d/tapline-users.xml, the tables applied as the `default` user).
# Generated events (some spelling a database name with \u escapes) are replayed through
# `tapline run`: every valid event must land in its tenant's database, or in the default
# one, exactly as the generator's truth says. Then every tenant user is checked against
# the server's actual answers: it reads its own database, is refused (by error code) on
# the other tenant's tables and on the default database, cannot list the other tenant's
# tables, and a read-only user cannot write. One line per check; any failed check fails.
# usage: tenant_isolation.sh TAPLINE SRC_DIR
set -euo pipefail
tapline=$1
src=$2
if ! command -v clickhouse-server > /dev/null && [ ! -x /usr/sbin/clickhouse-server ]; then
	echo "SKIP: clickhouse-server not installed"
	exit 77
fi
if [ "$(id -u)" != 0 ]; then
	echo "SKIP: needs root (DPDK)"
	exit 77
fi
work=$(mktemp -d /tmp/tapline-tenants.XXXXXX)
cleanup() {
	"$src/scripts/clickhouse.sh" stop "$work/ch" || true
	rm -rf "$work"
}
trap cleanup EXIT
[ -n "${KEEP:-}" ] && trap - EXIT
site="$src/tests/integration/site-tenants.yaml"
fail=0

# Passwords of the users whose profile entry names an environment variable.
export TAPLINE_TEST_ACME_WRITER_PASSWORD="acme-writer-$$-secret"
export TAPLINE_TEST_GLOBEX_READER_PASSWORD="globex-reader-$$-secret"
acme_reader_pw="acme-reader-secret" # its sha256 is written in the profile

# ---- generate -----------------------------------------------------------------------------
"$tapline" schema ddl --config "$site" > "$work/ddl.sql"
"$tapline" schema users --config "$site" > "$work/users.xml"
for db in telemetry tenant_acme tenant_globex; do
	grep -q "^CREATE DATABASE IF NOT EXISTS \`$db\`;" "$work/ddl.sql" ||
		{ echo "FAIL: the DDL creates no database $db"; exit 1; }
done
# The clear-text passwords never reach the users file.
if grep -qE "secret" "$work/users.xml"; then
	echo "FAIL: a clear-text password is in the generated users file"
	exit 1
fi

# ---- server with the generated users ------------------------------------------------------
mkdir -p "$work/ch/users.d"
cp "$work/users.xml" "$work/ch/users.d/tapline-users.xml"
url=$("$src/scripts/clickhouse.sh" start "$work/ch")
tcp_port=$(($(cat "$work/ch/http_port") + 1))
version=$(curl -sf --data-binary "SELECT version()" "$url")
echo "clickhouse $version on $url"

# As `default`: fail loudly, this is setup.
q() { curl -sSf --data-binary "$1" "$url"; }

# Apply the DDL statement by statement (HTTP takes one per request).
python3 - "$work/ddl.sql" "$url" <<'PY'
import sys, urllib.request
text = open(sys.argv[1]).read()
stmts = [s.strip() for s in text.split(";\n") if s.strip()]
for s in stmts:
    try:
        urllib.request.urlopen(urllib.request.Request(sys.argv[2], data=s.encode()), timeout=60)
    except urllib.error.HTTPError as e:
        sys.exit(f"DDL failed: {e.read().decode()[:500]}\n{s[:200]}")
print(f"applied {len(stmts)} DDL statements")
PY

# ---- events routed through tapline ---------------------------------------------------------
"$tapline" gen --data "${TAPLINE_DATA:-$src/../shared/data}" --seed 5 --count 4000 \
	--pcap "$work/cap.pcap" --truth "$work/truth.jsonl" > /dev/null
"$tapline" run --config "$site" --pcap "$work/cap.pcap" --once --idle-timeout 20s \
	--spool "$work/spool" --clickhouse "$url" --deliver-timeout 120s > "$work/run.out" \
	2> "$work/run.err" || { tail -20 "$work/run.err"; exit 1; }
# Where the truth says each valid event goes: acme's catalogs, globex's tpch_*, the rest
# (and every rejected event's dead letter) in the default database.
read -r want_acme want_globex want_default want_dead < <(python3 - "$work/truth.jsonl" <<'PY'
import json, sys
n = {"acme": 0, "globex": 0, "default": 0, "dead": 0}
for line in open(sys.argv[1]):
    e = json.loads(line)
    if not e["valid"]:
        n["dead"] += 1
        continue
    db = (e.get("cols") or {}).get("database_name") or ""
    if db in ("sales", "finance_eu", "m\u00fcnchen_dw"):
        n["acme"] += 1
    elif db.startswith("tpch_"):
        n["globex"] += 1
    else:
        n["default"] += 1
print(n["acme"], n["globex"], n["default"], n["dead"])
PY
)
landed() { # DB: rows of sink_output + error_events
	q "SELECT (SELECT count() FROM $1.sink_output) + (SELECT count() FROM $1.error_events)"
}
got_acme=$(landed tenant_acme)
got_globex=$(landed tenant_globex)
got_default=$(landed telemetry)
got_dead=$(q "SELECT count() FROM telemetry.dead_letter")
echo "routed: acme $got_acme/$want_acme globex $got_globex/$want_globex default $got_default/$want_default dead_letter $got_dead/$want_dead"
if [ "$got_acme" != "$want_acme" ] || [ "$got_globex" != "$want_globex" ] ||
	[ "$got_default" != "$want_default" ] || [ "$got_dead" != "$want_dead" ] ||
	[ "$want_acme" = 0 ] || [ "$want_globex" = 0 ] || [ "$want_default" = 0 ]; then
	echo "FAIL: events did not land where the routing rules send them"
	exit 1
fi
strays=$(q "SELECT (SELECT count() FROM tenant_acme.sink_output WHERE database_name NOT IN ('sales', 'finance_eu', 'm\\xC3\\xBCnchen_dw')) + (SELECT count() FROM tenant_globex.sink_output WHERE NOT startsWith(assumeNotNull(database_name), 'tpch_')) + (SELECT count() FROM telemetry.sink_output WHERE database_name IN ('sales', 'finance_eu') OR startsWith(assumeNotNull(database_name), 'tpch_'))")
[ "$strays" = 0 ] || { echo "FAIL: $strays rows in another tenant's database"; exit 1; }
acme_sink=$(q "SELECT count() FROM tenant_acme.sink_output")
acme_err=$(q "SELECT count() FROM tenant_acme.error_events")
globex_sink=$(q "SELECT count() FROM tenant_globex.sink_output")
[ "$acme_err" != 0 ] || { echo "FAIL: no error event of acme's to test with"; exit 1; }

# ---- checks -------------------------------------------------------------------------------
# as USER PASSWORD QUERY [EXTRA_URL_PARAMS]: sets $body and $code (the server's error code,
# 0 when the query succeeded).
body=
code=
as() {
	local user=$1 pw=$2 query=$3 extra=${4:-} http
	http=$(curl -sS -o "$work/answer" -w '%{http_code}' --data-binary "$query" \
		"${url}?user=$user&password=$pw${extra:+&$extra}") || http=000
	body=$(cat "$work/answer")
	if [ "$http" = 200 ]; then
		code=0
	else
		code=$(sed -nE '1s/^Code: ([0-9]+).*/\1/p' <<<"$body")
		code=${code:-"http$http"}
	fi
}

check() { # NAME CONDITION-DESCRIPTION: prints ok/FAIL from $ok
	if [ "$ok" = 1 ]; then
		echo "check $1: ok ($2)"
	else
		echo "check $1: FAIL (expected $2; got code $code, answer '$(head -c 200 <<<"$body" | tr '\n' ' ')')"
		fail=1
	fi
}

expect_rows() { # NAME USER PW QUERY WANT
	as "$2" "$3" "$4"
	ok=0
	[ "$code" = 0 ] && [ "$body" = "$5" ] && ok=1
	check "$1" "answer $5"
}

expect_code() { # NAME USER PW QUERY "CODES" [EXTRA]: refused with one of CODES
	as "$2" "$3" "$4" "${6:-}"
	ok=0
	for c in $5; do [ "$code" = "$c" ] && ok=1; done
	check "$1" "refused with code ${5// / or }"
}

wpw=$TAPLINE_TEST_ACME_WRITER_PASSWORD
gpw=$TAPLINE_TEST_GLOBEX_READER_PASSWORD
# Error codes: 291 DATABASE_ACCESS_DENIED, 164 READONLY, 193 WRONG_PASSWORD,
# 195 IP_ADDRESS_NOT_ALLOWED (18.16); current releases answer 497 ACCESS_DENIED for
# missing grants and 516 AUTHENTICATION_FAILED for both login failures.
denied="291 497"

# Control: as `default` the other tenant's data and tables are there to be seen, so the
# refusals below are refusals and not empty databases.
expect_rows control_default_reads_globex default "" "SELECT count() FROM tenant_globex.sink_output" "$globex_sink"
expect_rows control_default_lists_globex default "" "SHOW TABLES FROM tenant_globex" \
	"$(printf 'dead_letter\nerror_events\nsink_output')"

# Tenant A's reader: its own database.
expect_rows acme_reader_reads_own_sink acme_reader "$acme_reader_pw" \
	"SELECT count() FROM tenant_acme.sink_output" "$acme_sink"
expect_rows acme_reader_reads_own_errors acme_reader "$acme_reader_pw" \
	"SELECT count() FROM tenant_acme.error_events" "$acme_err"
expect_rows acme_reader_lists_own_tables acme_reader "$acme_reader_pw" \
	"SHOW TABLES FROM tenant_acme" "$(printf 'dead_letter\nerror_events\nsink_output')"
# ... and nothing of tenant B's.
expect_code acme_reader_refused_globex_sink acme_reader "$acme_reader_pw" \
	"SELECT count() FROM tenant_globex.sink_output" "$denied"
expect_code acme_reader_refused_globex_errors acme_reader "$acme_reader_pw" \
	"SELECT * FROM tenant_globex.error_events" "$denied"
expect_code acme_reader_refused_globex_as_current_db acme_reader "$acme_reader_pw" \
	"SELECT count() FROM sink_output" "$denied" "database=tenant_globex"
expect_code acme_reader_refused_default_db acme_reader "$acme_reader_pw" \
	"SELECT count() FROM telemetry.sink_output" "$denied"
# SHOW TABLES FROM another tenant: 18.16 answers an empty list (its system.tables only
# shows allowed databases), current releases refuse or answer empty: never a table name.
as acme_reader "$acme_reader_pw" "SHOW TABLES FROM tenant_globex"
ok=0
if { [ "$code" = 0 ] && [ -z "$body" ]; } || [ "$code" = 291 ] || [ "$code" = 497 ]; then
	ok=1
fi
check acme_reader_cannot_list_globex_tables "an empty list or a refusal"
expect_rows acme_reader_system_tables_hide_globex acme_reader "$acme_reader_pw" \
	"SELECT count() FROM system.tables WHERE database = 'tenant_globex'" 0
expect_rows acme_reader_system_parts_hide_globex acme_reader "$acme_reader_pw" \
	"SELECT count() FROM system.parts WHERE database = 'tenant_globex'" 0
expect_rows acme_reader_databases_listed acme_reader "$acme_reader_pw" \
	"SELECT name FROM system.databases WHERE name LIKE 'tenant%' OR name = 'telemetry'" \
	"tenant_acme"
# A table function would reach the other database through the server itself.
expect_code acme_reader_refused_remote acme_reader "$acme_reader_pw" \
	"SELECT count() FROM remote('127.0.0.1:$tcp_port', tenant_globex.sink_output)" \
	"164 $denied"
# Read-only: no INSERT, no DDL, and the setting cannot be lifted per query.
expect_code acme_reader_cannot_insert acme_reader "$acme_reader_pw" \
	"INSERT INTO tenant_acme.sink_output (query_id) VALUES ('x')" "164 $denied"
expect_code acme_reader_cannot_drop acme_reader "$acme_reader_pw" \
	"DROP TABLE tenant_acme.sink_output" "164 $denied"
expect_code acme_reader_cannot_lift_readonly acme_reader "$acme_reader_pw" \
	"INSERT INTO tenant_acme.sink_output (query_id) VALUES ('x')" "164 $denied" "readonly=0"
expect_rows acme_rows_unchanged default "" "SELECT count() FROM tenant_acme.sink_output" "$acme_sink"

# Tenant A's writer: inserts into its own database only.
expect_rows acme_writer_inserts_own acme_writer "$wpw" \
	"INSERT INTO tenant_acme.sink_output (query_id, event_type) VALUES ('acme-w1', 'finished')" ""
expect_rows acme_reader_sees_the_insert acme_reader "$acme_reader_pw" \
	"SELECT count() FROM tenant_acme.sink_output" "$((acme_sink + 1))"
expect_code acme_writer_refused_globex_insert acme_writer "$wpw" \
	"INSERT INTO tenant_globex.sink_output (query_id) VALUES ('intruder')" "$denied"
expect_code acme_writer_refused_globex_select acme_writer "$wpw" \
	"SELECT count() FROM tenant_globex.sink_output" "$denied"
expect_code acme_writer_refused_globex_drop acme_writer "$wpw" \
	"DROP TABLE tenant_globex.sink_output" "$denied 392"
expect_code acme_writer_refused_new_database acme_writer "$wpw" \
	"CREATE DATABASE tenant_evil" "$denied 392"
expect_code acme_writer_refused_ddl_by_default acme_writer "$wpw" \
	"CREATE TABLE tenant_acme.probe (x UInt8) ENGINE = Memory" "392 $denied"
expect_rows globex_untouched default "" \
	"SELECT count() FROM tenant_globex.sink_output WHERE query_id = 'intruder'" 0

# Tenant B's reader, limited to loopback by its networks.
expect_rows globex_reader_reads_own globex_reader "$gpw" \
	"SELECT count() FROM tenant_globex.sink_output" "$globex_sink"
expect_code globex_reader_refused_acme globex_reader "$gpw" \
	"SELECT count() FROM tenant_acme.sink_output" "$denied"

# Authentication: a wrong password, a user only allowed from another network.
expect_code acme_reader_wrong_password acme_reader "not-the-password" "SELECT 1" "193 516"
expect_code acme_remote_refused_from_loopback acme_remote "$acme_reader_pw" "SELECT 1" "195 516"
expect_code unknown_user_refused tapline_nobody "x" "SELECT 1" "192 516"

# Known limit, reported, not asserted: 18.16 applies a query's own settings without
# checking them, so a write user can lift allow_ddl=0 for DDL inside its own databases
# (never in another tenant's: allow_databases holds).
as acme_writer "$wpw" "CREATE TABLE tenant_acme.probe (x UInt8) ENGINE = Memory" "allow_ddl=1"
if [ "$code" = 0 ]; then
	echo "note: this server lets a write user lift allow_ddl=0 per query (DDL in its own database only)"
	q "DROP TABLE IF EXISTS tenant_acme.probe"
else
	echo "note: this server refuses a write user's per-query allow_ddl=1 (code $code)"
fi

if [ "$fail" != 0 ]; then
	echo "FAIL: tenant isolation"
	tail -5 "$work/ch/log/error.log" 2> /dev/null || true
	exit 1
fi
echo "tenant isolation: all checks passed"
