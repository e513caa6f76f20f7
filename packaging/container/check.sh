#!/usr/bin/env bash
# The container image and the Kubernetes manifest, built and run for real
# with the real Paperclip (CI stage; run as root on Debian 12):
#   1. build the image with packaging/container/build.sh (no registry)
#   2. an empty volume comes up unattended, reachable through a published port
#   3. `podman stop` (SIGTERM) is an ordered stop: exit 0, no SIGKILL
#   4. a second start on the same volume is healthy without onboarding; after
#      a SIGKILL of the whole container, a stale postmaster.pid naming a live
#      pid (PIDs restart from 1) is moved aside and the start is healthy
#   5. the manifest passes `kubernetes-validate --strict` and the restricted
#      Pod Security rules, and runs with `podman kube play`: probe passes,
#      reachable through the pod's address and port, `podman pod stop -t 60`
#      + `podman kube down` stop it in order
# Prints one line per step with its time, and a closing line with the
# total; exits non-zero at the first failure, with the container's log.
#
# Environment: PAPERCLIPD_BIN (the binary to ship; see build.sh),
# CONTAINERS_CONF / CONTAINERS_STORAGE_CONF [default: packaging/container/podman/],
# PAPERCLIPD_CONTAINER_CACHE [default /var/cache/paperclipd-container].
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
export CONTAINERS_CONF=${CONTAINERS_CONF:-$repo/packaging/container/podman/containers.conf}
export CONTAINERS_STORAGE_CONF=${CONTAINERS_STORAGE_CONF:-$repo/packaging/container/podman/storage.conf}
CACHE=${PAPERCLIPD_CONTAINER_CACHE:-/var/cache/paperclipd-container}
IMAGE=localhost/paperclip:latest   # the manifest's `paperclip:latest`
MANIFEST=packaging/kubernetes/paperclip.yaml
STOP_TIMEOUT=45                    # paperclipd's stop budget: 30 s + 15 s
READY_DEADLINE=300
started=$SECONDS
step_started=$SECONDS
step() {
    printf '%s (%ss)\n' "$1" "$((SECONDS - step_started))"
    step_started=$SECONDS
}
fail() {
    printf 'FAIL %s\n' "$*" >&2
    for c in $(podman ps -a --format '{{.Names}}' 2>/dev/null | grep -E '^(pcc-|paperclip-pod)' || true); do
        echo "--- podman logs $c (last 40 lines)" >&2
        podman logs "$c" 2>&1 | tail -40 >&2 || true
    done
    exit 1
}

[ "$(id -u)" -eq 0 ] || { echo "packaging/container/check.sh must run as root (podman storage in $CACHE, debootstrap)" >&2; exit 1; }

# --- 0. what this stage needs ------------------------------------------------
need=()
for p in podman runc catatonit debootstrap npm curl; do command -v "$p" >/dev/null || need+=("$p"); done
if [ ${#need[@]} -gt 0 ]; then
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${need[@]}" >/dev/null
fi
python3 -c 'import yaml' 2>/dev/null || python3 -m pip install -q pyyaml
python3 -c 'import kubernetes_validate' 2>/dev/null || python3 -m pip install -q kubernetes-validate
mkdir -p "$CACHE"
exec 8>"$CACHE/check.lock"
flock 8
step "dependencies: podman $(podman version --format '{{.Client.Version}}'), runc, catatonit, debootstrap"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
vol=pcc-data
cleanup() {
    podman kube down "$MANIFEST" >/dev/null 2>&1 || true
    podman rm -f -t 0 pcc-1 pcc-2 pcc-probe >/dev/null 2>&1 || true
    podman volume rm -f "$vol" paperclip-data >/dev/null 2>&1 || true
}
cleanup
trap cleanup EXIT

# Waits until container $1 is healthy (`podman healthcheck run`, or the
# command after it); fails when it exits or after the deadline.
wait_healthy() {
    local c=$1 deadline=$((SECONDS + READY_DEADLINE))
    shift
    [ $# -gt 0 ] || set -- podman healthcheck run "$c"
    until "$@" >/dev/null 2>&1; do
        [ "$(podman inspect -f '{{.State.Running}}' "$c" 2>/dev/null)" = true ] || fail "$c exited before it was healthy"
        [ $SECONDS -lt $deadline ] || fail "$c not healthy within ${READY_DEADLINE}s"
        sleep 1
    done
}
# `curl` of /api/health through $1 (host:port) says "ok".
health_ok() {
    local out
    out=$(curl -fsS --max-time 5 "http://$1/api/health") || fail "http://$1/api/health did not answer"
    grep -q '"status":"ok"' <<<"$out" || fail "http://$1/api/health answered $out, expected status ok"
}
# Runs a shell command ($2) as root on the host in volume $1's directory
# (vfs copies the whole image for every container: no throwaway ones).
on_volume() {
    local dir
    dir=$(podman volume inspect -f '{{.Mountpoint}}' "$1") || return 1
    (cd "$dir" && sh -c "$2")
}
# Stops container $1 with SIGTERM; checks exit 0, an ordered stop, no SIGKILL.
stop_in_order() {
    local c=$1 t0=$SECONDS code logs
    podman stop "$c" >/dev/null || fail "podman stop $c"
    code=$(podman inspect -f '{{.State.ExitCode}}' "$c")
    logs=$(podman logs "$c" 2>&1)
    [ "$code" = 0 ] || fail "$c exited $code after SIGTERM, expected 0"
    grep -q 'received SIGTERM; stopping the server' <<<"$logs" || fail "$c: paperclipd did not log the SIGTERM"
    grep -q "may take up to ${STOP_TIMEOUT}s" <<<"$logs" || fail "$c: no stop-budget hint as PID 1"
    ! grep -q 'killed with SIGKILL' <<<"$logs" || fail "$c: the server was SIGKILLed"
    grep -q 'after [0-9.]*s; stopped' <<<"$logs" || fail "$c: paperclipd did not report the server stopped"
    on_volume "$vol" 'test ! -e instances/default/db/postmaster.pid' ||
        fail "$c: postmaster.pid left behind: PostgreSQL did not stop in order"
    echo "  $c stopped in $((SECONDS - t0))s, exit 0"
}

# --- 1. build ---------------------------------------------------------------------
packaging/container/build.sh "$IMAGE" 2>&1 | grep '^container/build' || fail "build.sh (run it alone to see why)"
podman image inspect "$IMAGE" >/dev/null || fail "build.sh made no $IMAGE"
podman image prune -f >/dev/null || true   # vfs keeps every old layer whole
cfg=$(podman image inspect "$IMAGE" | python3 -c '
import json, sys
i = json.load(sys.stdin)[0]
c = i["Config"]
hc = (i.get("Healthcheck") or i.get("HealthCheck") or c.get("Healthcheck") or {}).get("Test")
print(c.get("User"), c.get("StopSignal"), c.get("Entrypoint"), hc)')
[[ $cfg == "1000:1000 SIGTERM ['paperclipd'] ['CMD', 'paperclipd', 'probe']" ]] || fail "image config: $cfg"
root=$(podman image mount "$IMAGE")
owner=$(stat -c '%u:%g %a' "$root/paperclip")
[ "$owner" = "1000:1000 750" ] || fail "/paperclip in the image is $owner, expected 1000:1000 750"
[ "$(stat -c %a "$root")" = 755 ] || fail "the image's / is $(stat -c %a "$root"), expected 755"
versions="node $(chroot "$root" /usr/local/bin/node --version), $(chroot "$root" /usr/local/bin/paperclipd --version)"
podman image unmount "$IMAGE" >/dev/null
step "1. image $IMAGE built ($(podman image inspect -f '{{.Size}}' "$IMAGE" | numfmt --to=iec)): $versions; config $cfg; /paperclip $owner"

# --- 2. unattended first start ------------------------------------------------------
port=$(free_port)
podman volume create "$vol" >/dev/null
podman run -d --name pcc-1 --stop-timeout "$STOP_TIMEOUT" -v "$vol:/paperclip" -p "127.0.0.1:$port:3100" "$IMAGE" >/dev/null
wait_healthy pcc-1
health_ok "127.0.0.1:$port"
logs=$(podman logs pcc-1 2>&1)
grep -q 'onboard --no-install-service --yes --bind lan' <<<"$logs" || fail "pcc-1 did not onboard unattended"
invite=$(sed 's/\x1b\[[0-9;]*m//g' <<<"$logs" | grep -o 'http://[^ ]*/invite/[^ ]*' | head -1)
[ -n "$invite" ] || fail "no bootstrap CEO invite URL in the log"
on_volume "$vol" 'stat -c "%u:%g" . instances/default/config.json' | sort -u | grep -qx 1000:1000 ||
    fail "the volume's files are not the image user's"
mode=$(on_volume "$vol" 'grep -o "\"deploymentMode\": *\"[a-z_]*\"\|\"host\": *\"[0-9.]*\"" instances/default/config.json' | tr '\n' ' ')
step "2. empty volume onboarded unattended and healthy; /api/health ok through 127.0.0.1:$port; $mode; first login: $invite"

# --- 3. ordered stop ---------------------------------------------------------------
stop_in_order pcc-1
step "3. podman stop: ordered"

# --- 4. restart, and a stale postmaster.pid -------------------------------------------
podman start pcc-1 >/dev/null
wait_healthy pcc-1
health_ok "127.0.0.1:$port"
onboarded=$(podman logs pcc-1 2>&1 | grep -c 'not set up yet' || true)
[ "$onboarded" -le 1 ] || fail "the second start onboarded again (onboarding logged $onboarded times)"
podman kill -s KILL pcc-1 >/dev/null
podman wait pcc-1 >/dev/null || true
on_volume "$vol" 'test -e instances/default/db/postmaster.pid' || fail "no postmaster.pid after SIGKILL"
# PIDs restart from 1: make the stale file name pid 1, alive (paperclipd itself) and no PostgreSQL.
on_volume "$vol" 'sed -i "1s/.*/1/" instances/default/db/postmaster.pid && chown 1000:1000 instances/default/db/postmaster.pid'
podman start pcc-1 >/dev/null
wait_healthy pcc-1
health_ok "127.0.0.1:$port"
moved=$(podman logs pcc-1 2>&1 | grep -o 'moved the stale .*' | tail -1)
[ -n "$moved" ] || fail "the stale postmaster.pid was not reported as moved aside"
stop_in_order pcc-1
step "4. restarted without onboarding; after SIGKILL: $moved"

# --- 5. Kubernetes ------------------------------------------------------------------------
python3 -m kubernetes_validate --strict --quiet -k 1.37.0 "$MANIFEST" || fail "kubernetes-validate --strict"
python3 packaging/kubernetes/restricted.py "$MANIFEST" || fail "restricted Pod Security rules"
klog=$(mktemp)   # the pod's log outlives the pod (kube down removes it)
podman kube play --log-opt "path=$klog" "$MANIFEST" >/dev/null || fail "podman kube play"
# podman 4.3 names a Deployment's pod <name>-pod-0, its container <pod>-<container>.
kc=$(podman ps --format '{{.Names}}' | grep -E '^paperclip-pod(-[0-9]+)?-paperclip$' | head -1)
[ -n "$kc" ] || fail "kube play started no paperclip container: $(podman ps -a --format '{{.Names}}')"
kt0=$SECONDS
wait_healthy "$kc" podman exec "$kc" paperclipd probe
kready=$((SECONDS - kt0))
infra=$(podman pod inspect -f '{{.InfraContainerID}}' "${kc%-paperclip}")
pod_ip=$(podman inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$infra")
[ -n "$pod_ip" ] || fail "no address for the pod"
# Where a Service sends its traffic. Paperclip's authenticated/private mode
# answers only hostnames it allows (`paperclipai allowed-hostname`), so ask
# as localhost: what counts here is that the pod's port answers.
curl -fsS --max-time 5 -H 'Host: localhost:3100' "http://$pod_ip:3100/api/health" | grep -q '"status":"ok"' ||
    fail "http://$pod_ip:3100/api/health (the pod's port) did not say ok"
t0=$SECONDS
# podman 4.3's `kube down` stops with no grace (SIGKILL right after SIGTERM:
# no stop in the log, postmaster.pid left behind; seen here), and ignores
# terminationGracePeriodSeconds: stop the pod with the grace first.
podman pod stop -t 60 "${kc%-paperclip}" >/dev/null || fail "podman pod stop"
podman kube down "$MANIFEST" >/dev/null || fail "podman kube down"
on_volume paperclip-data 'test ! -e instances/default/db/postmaster.pid' ||
    fail "kube down left postmaster.pid: PostgreSQL did not stop in order"
grep -q 'received SIGTERM; stopping the server' "$klog" || { tail -5 "$klog" >&2; fail "kube down: no ordered stop in the pod's log"; }
! grep -q 'killed with SIGKILL' "$klog" || fail "kube down: the server was SIGKILLed"
kstop=$(grep -o 'the server exited with code 0 after [0-9.]*s; stopped' "$klog") || { tail -5 "$klog" >&2; fail "kube down: paperclipd did not report the server stopped"; }
rm -f "$klog"
step "5. manifest valid (1.37, strict) and restricted; kube play: probe passes after ${kready}s, ok via the pod's port $pod_ip:3100; pod stop + kube down in $((SECONDS - t0))s: $kstop, postmaster.pid gone"

echo "container stage: all passed in $((SECONDS - started))s"
