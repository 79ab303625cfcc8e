#!/bin/bash
# Run a private ClickHouse server on loopback for tests, the demo and benches.
#
#   scripts/clickhouse.sh start DIR [HTTP_PORT]   start (or restart) a server whose data,
#                                                 config and logs live in DIR; prints its
#                                                 HTTP URL once it answers /ping
#   scripts/clickhouse.sh stop DIR                stop it (data stays in DIR)
#   scripts/clickhouse.sh url DIR                 print the URL of DIR's server
#
# Listens on 127.0.0.1 only. Without HTTP_PORT a free port is chosen; the native TCP port
# is HTTP_PORT+1. Works with Debian's clickhouse-server 18.16 and current releases.
set -euo pipefail
cmd=${1:-}
dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || { sed -n '2,11p' "$0" >&2; exit 2; }
server=$(command -v clickhouse-server || echo /usr/sbin/clickhouse-server)

port_free() { ! ss -Hltn "sport = :$1" | grep -q .; }

case "$cmd" in
start)
	mkdir -p "$dir/data" "$dir/tmp" "$dir/log" "$dir/user_files" "$dir/format_schemas"
	dir=$(cd "$dir" && pwd)
	if [ -f "$dir/http_port" ]; then
		port=$(cat "$dir/http_port")
	elif [ -n "${3:-}" ]; then
		port=$3
	else
		for _ in $(seq 1 100); do
			port=$((20000 + RANDOM % 20000))
			port_free "$port" && port_free $((port + 1)) && break
		done
	fi
	echo "$port" > "$dir/http_port"
	cat > "$dir/config.xml" <<XML
<?xml version="1.0"?>
<yandex>
  <logger>
    <level>warning</level>
    <log>$dir/log/server.log</log>
    <errorlog>$dir/log/error.log</errorlog>
    <console>0</console>
  </logger>
  <listen_host>127.0.0.1</listen_host>
  <http_port>$port</http_port>
  <tcp_port>$((port + 1))</tcp_port>
  <path>$dir/data/</path>
  <tmp_path>$dir/tmp/</tmp_path>
  <user_files_path>$dir/user_files/</user_files_path>
  <format_schema_path>$dir/format_schemas/</format_schema_path>
  <users_config>$dir/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <mark_cache_size>268435456</mark_cache_size>
  <max_concurrent_queries>100</max_concurrent_queries>
</yandex>
XML
	[ -f "$dir/users.xml" ] || cat > "$dir/users.xml" <<XML
<?xml version="1.0"?>
<yandex>
  <profiles><default><max_memory_usage>4000000000</max_memory_usage></default></profiles>
  <users>
    <default>
      <password></password>
      <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
      <profile>default</profile>
      <quota>default</quota>
    </default>
  </users>
  <quotas><default></default></quotas>
</yandex>
XML
	if [ -f "$dir/pid" ] && kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
		echo "http://127.0.0.1:$port/"
		exit 0
	fi
	# The server runs as whoever starts it (root in CI): it needs no system user.
	setsid "$server" --config-file="$dir/config.xml" > "$dir/log/stdout.log" 2>&1 < /dev/null &
	echo $! > "$dir/pid"
	for _ in $(seq 1 300); do
		if curl -sf "http://127.0.0.1:$port/ping" > /dev/null 2>&1; then
			echo "http://127.0.0.1:$port/"
			exit 0
		fi
		if ! kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
			echo "clickhouse: server exited; last log lines:" >&2
			tail -20 "$dir/log/error.log" "$dir/log/stdout.log" >&2 2>/dev/null || true
			exit 1
		fi
		sleep 0.1
	done
	echo "clickhouse: no answer on port $port after 30 s" >&2
	exit 1
	;;
stop)
	[ -f "$dir/pid" ] || exit 0
	pid=$(cat "$dir/pid")
	if kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid"
		for _ in $(seq 1 150); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
	fi
	rm -f "$dir/pid"
	;;
url)
	echo "http://127.0.0.1:$(cat "$dir/http_port")/"
	;;
*)
	sed -n '2,11p' "$0" >&2
	exit 2
	;;
esac
