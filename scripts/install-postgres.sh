#!/usr/bin/env bash
# Installs what the Medusa suite (and later the PostgreSQL suites) need to start a throwaway cluster:
# Debian's postgresql package (initdb, pg_ctl), only when missing. Node.js 20+ and npm are checked too,
# since Medusa v2 runs on them; they are part of this machine kind, and the script says so if absent.
set -euo pipefail

if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    if [[ "$(id -u)" -ne 0 ]]; then
        echo "install-postgres: initdb is missing and installing postgresql needs root" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq postgresql >/dev/null
fi
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "install-postgres: Node.js 20+ and npm are needed for the Medusa suite; install Debian's nodejs and npm" >&2
    exit 1
fi
echo "postgres: $(ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | head -n 1 || command -v initdb); node $(node --version)"
