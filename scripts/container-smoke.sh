#!/usr/bin/env bash
# Container smoke test: build the image with podman, run it with a host-dir volume, sync the demo catalog
# over the admin API, stop it with SIGTERM and audit the ledger file left on the volume; then restart on the
# same volume, stop it with SIGTERM in the middle of a long sync and audit that the run was closed.
#
# Works from nothing on a Debian/Ubuntu host as root: installs podman & co. via apt, builds a Debian
# bookworm base image with debootstrap (cached as a tarball) when the base image is missing.
#
# Settings (environment):
#   SMOKE_BASE_IMAGE     base for the build (default localhost/product-sync-base:bookworm, built here when missing;
#                        any other name is pulled if missing, e.g. docker.io/library/python:3.11-slim)
#   SMOKE_IMAGE          tag of the project image (default localhost/product-sync:smoke)
#   SMOKE_CACHE_DIR      where the debootstrap tarball is cached (default /var/cache/product-sync)
#   SMOKE_DEBIAN_MIRROR  mirror for debootstrap (default: the host's apt mirror, else http://deb.debian.org/debian)
#   SMOKE_NETWORK        bridge (default: publish 127.0.0.1:PORT -> 9000, service binds 0.0.0.0 in its own
#                        network namespace) or host (--network host, service binds 127.0.0.1:PORT)
#   SMOKE_STORAGE_DRIVER podman storage driver, in a store of its own (default: podman's own store;
#                        vfs is chosen when that does not work)
#   SMOKE_EXPECTED_CREATED  products the demo upstream serves (default 194)
#   SMOKE_SYNC_TIMEOUT_S    how long the sync may take (default 120)
#   SMOKE_KEEP_DATA=1    keep the data directory (the ledger) after the run
set -Eeuo pipefail

REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly REPO_DIR
readonly BASE_IMAGE="${SMOKE_BASE_IMAGE:-localhost/product-sync-base:bookworm}"
readonly DEFAULT_BASE_IMAGE="localhost/product-sync-base:bookworm"
readonly IMAGE="${SMOKE_IMAGE:-localhost/product-sync:smoke}"
readonly CACHE_DIR="${SMOKE_CACHE_DIR:-/var/cache/product-sync}"
readonly BASE_TARBALL="${CACHE_DIR}/debian-bookworm-minbase-python3.tar"
readonly NETWORK_MODE="${SMOKE_NETWORK:-bridge}"
readonly EXPECTED_CREATED="${SMOKE_EXPECTED_CREATED:-194}"
readonly SYNC_TIMEOUT_S="${SMOKE_SYNC_TIMEOUT_S:-120}"
readonly HEALTH_TIMEOUT_S=60
readonly STOP_TIMEOUT_S=15
# Far more than can sync before the SIGTERM that follows the first progress report.
readonly LONG_FEED_COUNT=1000000
readonly CONTAINER="product-sync-smoke-$$"
# The runtime's default rlimits are above what this host lets a container set; runc is what works here.
readonly RUN_FLAGS=(--runtime runc --ulimit nofile=20000:20000 --ulimit nproc=20000:20000)

PODMAN=(podman)
PYTHON=python3
DATA_DIR=""
WORK_DIR=""
CONTAINER_STARTED=0
ADMIN_TOKEN=""
BASE_URL=""
INTERRUPTED_RUN=""
STEP_STARTED=0
SCRIPT_STARTED="$(date +%s.%N)"

step() {
    STEP_STARTED="$(date +%s.%N)"
    printf '\n==> [%s] %s\n' "$(date +%H:%M:%S)" "$*"
}

step_done() {
    printf '    ok (%ss)%s\n' "$(elapsed "${STEP_STARTED}")" "${1:+ - $1}"
}

info() { printf '    %s\n' "$*"; }

fail() {
    printf '\nFAIL: %s\n' "$*" >&2
    exit 1
}

elapsed() { awk -v start="$1" -v now="$(date +%s.%N)" 'BEGIN { printf "%.1f", now - start }'; }

redact() {
    # Container logs are shown on failure; the token must never appear in them anyway (checked below).
    if [[ -n "${ADMIN_TOKEN}" ]]; then sed "s/${ADMIN_TOKEN}/<redacted>/g"; else cat; fi
}

cleanup() {
    local status=$?
    set +e
    if [[ "${CONTAINER_STARTED}" == 1 ]]; then
        if [[ "${status}" != 0 ]]; then
            printf '\n--- last container log lines ---\n' >&2
            "${PODMAN[@]}" logs --tail 40 "${CONTAINER}" 2>&1 | redact >&2
            printf -- '--------------------------------\n' >&2
            if [[ -n "${DATA_DIR}" ]]; then
                "${PODMAN[@]}" logs "${CONTAINER}" 2>&1 | redact >"${DATA_DIR}/container.log"
                info "full container log: ${DATA_DIR}/container.log"
            fi
        fi
        "${PODMAN[@]}" rm --force --time 0 "${CONTAINER}" >/dev/null 2>&1
        info "removed container ${CONTAINER}"
    fi
    [[ -n "${WORK_DIR}" ]] && rm -rf "${WORK_DIR}"
    if [[ -n "${DATA_DIR}" ]]; then
        if [[ "${SMOKE_KEEP_DATA:-0}" == 1 || "${status}" != 0 ]]; then
            info "data directory kept: ${DATA_DIR}"
        else
            rm -rf "${DATA_DIR}"
        fi
    fi
    if [[ "${status}" == 0 ]]; then
        printf '\nPASS: container smoke test (%ss total)\n' "$(elapsed "${SCRIPT_STARTED}")"
    else
        printf '\nFAILED with status %s after %ss\n' "${status}" "$(elapsed "${SCRIPT_STARTED}")" >&2
    fi
}
trap cleanup EXIT
trap 'fail "interrupted"' INT TERM HUP
# Output piped into something that quits early (e.g. head): still clean up, quietly.
trap 'exit 141' PIPE

# --- 1. tools ---------------------------------------------------------------------------------------------

install_tools() {
    step "1/11 tools: podman, buildah, runc, debootstrap, sqlite3, python3"
    local -A package_for=(
        [podman]=podman [buildah]=buildah [runc]=runc [debootstrap]=debootstrap
        [sqlite3]=sqlite3 [python3]=python3 [tar]=tar
    )
    local missing=() command
    for command in "${!package_for[@]}"; do
        command -v "${command}" >/dev/null 2>&1 || missing+=("${package_for[${command}]}")
    done
    if ((${#missing[@]})); then
        [[ "$(id -u)" == 0 ]] || fail "missing ${missing[*]} and not root: install them first"
        info "installing via apt: ${missing[*]}"
        # Another apt run (e.g. a parallel CI step) may hold the lock: wait for it instead of failing.
        apt-get -o DPkg::Lock::Timeout=600 update -q >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q \
            "${missing[@]}" uidmap containernetworking-plugins iptables ca-certificates >/dev/null
    fi
    if [[ -n "${SMOKE_STORAGE_DRIVER:-}" ]]; then
        use_storage_driver "${SMOKE_STORAGE_DRIVER}"
    elif ! podman info >/dev/null 2>&1; then
        info "podman's default storage does not work here; using vfs"
        use_storage_driver vfs
    fi
    # The real interpreter, not a version-manager shim: the HTTP checks start it many times.
    PYTHON="$(python3 -c 'import sys; print(sys.executable)')"
    local driver
    driver="$("${PODMAN[@]}" info --format '{{.Store.GraphDriverName}}')" || fail "podman does not work here"
    step_done "$(podman --version), storage driver ${driver}"
}

use_storage_driver() {
    # A store remembers its driver: another driver needs its own store, or podman refuses to start.
    PODMAN=(podman --storage-driver "$1" --root "/var/lib/containers/storage-$1"
        --runroot "/run/containers/storage-$1")
}

# --- 2. base image ----------------------------------------------------------------------------------------

debian_mirror() {
    if [[ -n "${SMOKE_DEBIAN_MIRROR:-}" ]]; then
        echo "${SMOKE_DEBIAN_MIRROR}"
        return
    fi
    local mirror
    mirror="$(grep -hoE '^(deb|URIs:) +(\[[^]]*\] +)?https?://[^ ]+/debian/?( |$)' \
        /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null \
        | grep -oE 'https?://[^ ]+' | head -n 1 || true)"
    echo "${mirror:-http://deb.debian.org/debian}"
}

build_base_tarball() {
    local rootfs="${WORK_DIR}/rootfs" mirror started
    mirror="$(debian_mirror)"
    started="$(date +%s.%N)"
    info "debootstrap bookworm (minbase + python3, python3-venv, ca-certificates) from ${mirror}"
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
        bookworm "${rootfs}" "${mirror}" >"${WORK_DIR}/debootstrap.log" 2>&1 \
        || { tail -n 20 "${WORK_DIR}/debootstrap.log" >&2; fail "debootstrap failed"; }
    info "debootstrap done in $(elapsed "${started}")s"
    started="$(date +%s.%N)"
    # Package caches and docs are dead weight in an image.
    rm -rf "${rootfs}"/var/cache/apt/archives/*.deb "${rootfs}"/var/cache/apt/*.bin \
        "${rootfs}"/var/lib/apt/lists/* "${rootfs}"/usr/share/doc/* "${rootfs}"/usr/share/man/*
    mkdir -p "${CACHE_DIR}"
    # Uncompressed: compressing costs more time than the disk space is worth here. Write then rename,
    # so an interrupted run never leaves a truncated tarball in the cache.
    tar --numeric-owner -C "${rootfs}" -cf "${BASE_TARBALL}.partial" .
    mv "${BASE_TARBALL}.partial" "${BASE_TARBALL}"
    rm -rf "${rootfs}"
    info "cached ${BASE_TARBALL} ($(du -h "${BASE_TARBALL}" | cut -f1), packed in $(elapsed "${started}")s)"
}

ensure_base_image() {
    step "2/11 base image ${BASE_IMAGE}"
    local exists=0
    "${PODMAN[@]}" image exists "${BASE_IMAGE}" || exists=$?
    case "${exists}" in
        0) step_done "present" && return ;;
        1) ;;
        *) fail "podman image exists failed (${exists})" ;;
    esac
    if [[ "${BASE_IMAGE}" != "${DEFAULT_BASE_IMAGE}" ]]; then
        "${PODMAN[@]}" pull "${BASE_IMAGE}" || fail "cannot pull ${BASE_IMAGE}"
        step_done "pulled"
        return
    fi
    [[ -s "${BASE_TARBALL}" ]] || build_base_tarball
    "${PODMAN[@]}" import \
        --change 'ENV=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD=["/bin/bash"]' \
        "${BASE_TARBALL}" "${BASE_IMAGE}" >/dev/null || fail "podman import of ${BASE_TARBALL} failed"
    step_done "imported from ${BASE_TARBALL}"
}

# --- 3. project image -------------------------------------------------------------------------------------

build_image() {
    step "3/11 build ${IMAGE} from ${REPO_DIR}/Dockerfile"
    local build_args=(--build-arg "BASE_IMAGE=${BASE_IMAGE}")
    # pip inside the build must trust what the host trusts (PyPI may be reached through a TLS-inspecting proxy).
    if [[ -s /etc/ssl/certs/ca-certificates.crt ]]; then
        build_args+=(--volume /etc/ssl/certs:/etc/ssl/certs:ro
            --build-arg PIP_CERT=/etc/ssl/certs/ca-certificates.crt)
    fi
    local previous_id
    previous_id="$("${PODMAN[@]}" image inspect --format '{{.Id}}' "${IMAGE}" 2>/dev/null || true)"
    # --format docker keeps HEALTHCHECK and STOPSIGNAL, which the OCI image format has no field for.
    "${PODMAN[@]}" build --isolation=chroot --format docker --pull=never "${build_args[@]}" \
        --tag "${IMAGE}" "${REPO_DIR}" >"${WORK_DIR}/build.log" 2>&1 \
        || { tail -n 30 "${WORK_DIR}/build.log" >&2; fail "image build failed"; }
    local user size current_id
    current_id="$("${PODMAN[@]}" image inspect --format '{{.Id}}' "${IMAGE}")"
    if [[ -n "${previous_id}" && "${previous_id}" != "${current_id}" ]]; then
        # The tag moved: drop the image it pointed at, so repeated runs do not pile up untagged images.
        "${PODMAN[@]}" rmi "${previous_id}" >/dev/null 2>&1 || true
    fi
    user="$("${PODMAN[@]}" image inspect --format '{{.Config.User}}' "${IMAGE}")"
    size="$("${PODMAN[@]}" image inspect --format '{{.Size}}' "${IMAGE}")"
    [[ -n "${user}" && "${user%%:*}" != 0 && "${user%%:*}" != root ]] || fail "image runs as root (User=${user:-unset})"
    step_done "user ${user}, $((size / 1000000)) MB"
}

# --- 4. run -----------------------------------------------------------------------------------------------

free_port() {
    "${PYTHON}" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start_container() {
    step "4/11 start container (${NETWORK_MODE} network)"
    local user
    user="$("${PODMAN[@]}" image inspect --format '{{.Config.User}}' "${IMAGE}")"
    DATA_DIR="$(mktemp -d /tmp/product-sync-smoke-data.XXXXXX)"
    # The service runs as the image's non-root user: it must own the host directory behind /data.
    chown "${user}" "${DATA_DIR}"
    ADMIN_TOKEN="smoke-$("${PYTHON}" -c 'import secrets; print(secrets.token_urlsafe(18))')"
    launch_container
    step_done "${CONTAINER} on ${BASE_URL}, /data -> ${DATA_DIR}"
}

# launch_container [--env NAME=VALUE ...]: run the image on DATA_DIR, on a free loopback port (BASE_URL).
launch_container() {
    local port network_flags
    port="$(free_port)"
    BASE_URL="http://127.0.0.1:${port}"
    if [[ "${NETWORK_MODE}" == host ]]; then
        network_flags=(--network host --env "SYNC_HOST=127.0.0.1" --env "SYNC_PORT=${port}")
    else
        network_flags=(--publish "127.0.0.1:${port}:9000")
    fi
    # The token goes in through the environment, not argv, so it never shows in process listings.
    # No systemd here to drive health timers (podman logs an error about it, kept in run.log): the
    # HEALTHCHECK is run on demand in step 5 instead.
    SYNC_ADMIN_TOKEN="${ADMIN_TOKEN}" "${PODMAN[@]}" run --detach --name "${CONTAINER}" "${RUN_FLAGS[@]}" \
        "${network_flags[@]}" --health-interval disable \
        --volume "${DATA_DIR}:/data" --env SYNC_ADMIN_TOKEN "$@" \
        "${IMAGE}" >/dev/null 2>"${WORK_DIR}/run.log" \
        || { cat "${WORK_DIR}/run.log" >&2; fail "podman run failed"; }
    CONTAINER_STARTED=1
}

await_health() {
    local deadline=$((SECONDS + HEALTH_TIMEOUT_S)) reply
    until reply="$(smoke_client health "${BASE_URL}")"; do
        [[ "$(container_state)" == running ]] || fail "container stopped before it was healthy"
        ((SECONDS < deadline)) || fail "no healthy /health after ${HEALTH_TIMEOUT_S}s (${reply})"
        sleep 0.5
    done
    info "/health: $(field health <<<"${reply}")"
}

# stop_with_sigterm: podman stop, then require exit code 0, no SIGKILL and no token in the log.
stop_with_sigterm() {
    local started exit_code logs
    started="$(date +%s.%N)"
    "${PODMAN[@]}" stop --time "${STOP_TIMEOUT_S}" "${CONTAINER}" >/dev/null 2>"${WORK_DIR}/stop.log" \
        || { cat "${WORK_DIR}/stop.log" >&2; fail "podman stop failed"; }
    # podman stop falls back to SIGKILL after the timeout: that is exit 137 and a warning, never clean.
    if grep -q SIGKILL "${WORK_DIR}/stop.log"; then fail "SIGTERM ignored: killed after ${STOP_TIMEOUT_S}s"; fi
    exit_code="$("${PODMAN[@]}" inspect --format '{{.State.ExitCode}}' "${CONTAINER}")"
    [[ "${exit_code}" == 0 ]] || fail "container exited with ${exit_code} on SIGTERM"
    logs="$("${PODMAN[@]}" logs "${CONTAINER}" 2>&1)"
    if [[ "${logs}" == *"${ADMIN_TOKEN}"* ]]; then fail "the admin token appears in the container log"; fi
    info "exit code 0 after $(elapsed "${started}")s; token absent from $(wc -l <<<"${logs}") log lines"
}

remove_stopped_container() {
    "${PODMAN[@]}" rm "${CONTAINER}" >/dev/null 2>"${WORK_DIR}/rm.log" \
        || { cat "${WORK_DIR}/rm.log" >&2; fail "podman rm failed"; }
    CONTAINER_STARTED=0
}

# --- HTTP side: scripts/container_smoke_client.py; the token goes through the environment, never argv ---

smoke_client() { SMOKE_TOKEN="${ADMIN_TOKEN}" "${PYTHON}" "${REPO_DIR}/scripts/container_smoke_client.py" "$@"; }

# field NAME < key=value lines
field() { sed -n "s/^$1=//p" | head -n 1; }

container_state() { "${PODMAN[@]}" inspect --format '{{.State.Status}}' "${CONTAINER}" 2>/dev/null || echo gone; }

# --- 5. health --------------------------------------------------------------------------------------------

wait_for_health() {
    step "5/11 wait for GET /health"
    await_health
    # The image's own HEALTHCHECK command, run inside the container.
    "${PODMAN[@]}" healthcheck run "${CONTAINER}" >/dev/null || fail "image HEALTHCHECK reports unhealthy"
    step_done "HEALTHCHECK healthy"
}

# --- 6. sync ----------------------------------------------------------------------------------------------

run_sync() {
    step "6/11 POST /admin/sync/trigger, poll GET /admin/sync/status"
    local reply
    reply="$(smoke_client sync "${BASE_URL}" "${SYNC_TIMEOUT_S}")" || fail "$(field error <<<"${reply}")"
    local triggered_run last_status run_id created
    triggered_run="$(field triggeredRunId <<<"${reply}")"
    last_status="$(field lastStatus <<<"${reply}")"
    run_id="$(field runId <<<"${reply}")"
    created="$(field created <<<"${reply}")"
    info "triggered run ${triggered_run}, startedAt $(field startedAt <<<"${reply}")"
    info "status: lastStatus=${last_status} created=${created} duration=$(field lastDuration <<<"${reply}")s" \
        "triggeredBy=$(field triggeredBy <<<"${reply}")"
    [[ "${last_status}" == success ]] \
        || fail "sync ended '${last_status}' (within ${SYNC_TIMEOUT_S}s): $(field lastError <<<"${reply}")"
    [[ "${run_id}" == "${triggered_run}" ]] || fail "status shows run ${run_id}, triggered ${triggered_run}"
    [[ "${created}" == "${EXPECTED_CREATED}" ]] || fail "stats.created=${created}, expected ${EXPECTED_CREATED}"
    [[ "$(field isRunning <<<"${reply}")" == false ]] || fail "isRunning still true after success"
    step_done "created ${created}"
}

# --- 7. stop ----------------------------------------------------------------------------------------------

stop_container() {
    step "7/11 stop with SIGTERM (podman stop -t ${STOP_TIMEOUT_S})"
    stop_with_sigterm
    step_done
}

# --- 8. ledger --------------------------------------------------------------------------------------------

sql() { sqlite3 -batch -noheader -readonly "${DATA_DIR}/product-sync.db" "$1"; }

audit_ledger() {
    step "8/11 audit the ledger on the volume with sqlite3"
    [[ -s "${DATA_DIR}/product-sync.db" ]] || fail "no ${DATA_DIR}/product-sync.db on the volume"
    local running succeeded products
    info "runs: $(sql "SELECT group_concat(id || ':' || status || ' created=' || created || ' by ' || triggered_by, '; ') FROM runs")"
    running="$(sql "SELECT count(*) FROM runs WHERE status = 'running'")"
    succeeded="$(sql "SELECT count(*) FROM runs WHERE status = 'success' AND created = ${EXPECTED_CREATED} AND finished_at IS NOT NULL")"
    products="$(sql "SELECT count(*) FROM products")"
    [[ "${running}" == 0 ]] || fail "${running} run(s) still marked running after shutdown"
    [[ "${succeeded}" == 1 ]] || fail "expected one success run with created=${EXPECTED_CREATED}, found ${succeeded}"
    [[ "${products}" == "${EXPECTED_CREATED}" ]] || fail "products table has ${products} rows"
    [[ "$(sql 'PRAGMA integrity_check')" == ok ]] || fail "integrity_check failed"
    step_done "1 success run (created=${EXPECTED_CREATED}), 0 running, ${products} products, integrity ok"
}

# --- 9.-10. restart, SIGTERM during a sync -------------------------------------------------------------------

interrupt_running_sync() {
    step "9/11 restart on the same volume (${LONG_FEED_COUNT}-product feed), SIGTERM in the middle of the sync"
    remove_stopped_container
    launch_container --env "SYNC_DEMO_PRODUCT_COUNT=${LONG_FEED_COUNT}"
    await_health
    local reply
    reply="$(smoke_client start "${BASE_URL}" "${SYNC_TIMEOUT_S}")" || fail "$(field error <<<"${reply}")"
    INTERRUPTED_RUN="$(field runId <<<"${reply}")"
    info "run ${INTERRUPTED_RUN} is running: $(field processed <<<"${reply}") of $(field total <<<"${reply}") processed"
    stop_with_sigterm
    step_done
}

audit_interrupted_run() {
    step "10/11 audit: the interrupted run is closed, the first run unchanged"
    info "runs: $(sql "SELECT group_concat(id || ':' || status || ' processed=' || processed || ' error=' || coalesce(error_message, '-'), '; ') FROM runs")"
    local interrupted first running
    interrupted="$(sql "SELECT status || '|' || (finished_at IS NOT NULL) || '|' || coalesce(error_message, '') FROM runs WHERE id = ${INTERRUPTED_RUN}")"
    first="$(sql "SELECT count(*) FROM runs WHERE status = 'success' AND created = ${EXPECTED_CREATED}")"
    running="$(sql "SELECT count(*) FROM runs WHERE status = 'running'")"
    [[ "${running}" == 0 ]] || fail "${running} run(s) still marked running after the SIGTERM"
    [[ "${interrupted}" == "error|1|"*shutdown* ]] \
        || fail "interrupted run ${INTERRUPTED_RUN} is '${interrupted}', expected a finished error naming the shutdown"
    [[ "${first}" == 1 ]] || fail "the first run's success row changed"
    [[ "$(sql 'PRAGMA integrity_check')" == ok ]] || fail "integrity_check failed"
    step_done "run ${INTERRUPTED_RUN} finished as error (shutdown), 0 running, integrity ok"
}

# --- 11. clean up -----------------------------------------------------------------------------------------

remove_container() {
    step "11/11 remove container"
    remove_stopped_container
    step_done
}

main() {
    [[ "${NETWORK_MODE}" == bridge || "${NETWORK_MODE}" == host ]] || fail "SMOKE_NETWORK must be bridge or host"
    WORK_DIR="$(mktemp -d /tmp/product-sync-smoke-work.XXXXXX)"
    install_tools
    ensure_base_image
    build_image
    start_container
    wait_for_health
    run_sync
    stop_container
    audit_ledger
    interrupt_running_sync
    audit_interrupted_run
    remove_container
}

main "$@"
