#!/usr/bin/env python3
"""Checks every pod template in a manifest against the "restricted" Pod
Security Standard (Kubernetes 1.37; the baseline rules included), as the
PodSecurity admission controller would: prints each violation and exits 1,
or prints one line per pod and exits 0.

    python3 packaging/kubernetes/restricted.py packaging/kubernetes/paperclip.yaml
"""
import sys

import yaml

ALLOWED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
                   "persistentVolumeClaim", "projected", "secret"}
SAFE_SYSCTLS = {"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range",
                "net.ipv4.ip_unprivileged_port_start", "net.ipv4.tcp_syncookies",
                "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
                "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout",
                "net.ipv4.tcp_keepalive_intvl", "net.ipv4.tcp_keepalive_probes"}
BASELINE_CAPS = {"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL",
                 "MKNOD", "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP",
                 "SETUID", "SYS_CHROOT"}


def pod_specs(doc):
    kind = doc.get("kind")
    spec = doc.get("spec") or {}
    if kind == "Pod":
        yield doc["metadata"]["name"], spec
    elif kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
        yield f'{kind}/{doc["metadata"]["name"]}', spec["template"]["spec"]
    elif kind == "CronJob":
        yield f'{kind}/{doc["metadata"]["name"]}', spec["jobTemplate"]["spec"]["template"]["spec"]


def check(spec):
    bad = []
    psc = spec.get("securityContext") or {}
    for k in ("hostNetwork", "hostPID", "hostIPC", "hostUsers"):
        if spec.get(k) is True and k != "hostUsers":
            bad.append(f"{k}: true")
    for v in spec.get("volumes") or []:
        types = set(v) - {"name"}
        if not types <= ALLOWED_VOLUMES:
            bad.append(f'volume {v["name"]}: type {sorted(types - ALLOWED_VOLUMES)} not allowed')
    for s in psc.get("sysctls") or []:
        if s["name"] not in SAFE_SYSCTLS:
            bad.append(f'sysctl {s["name"]} not allowed')
    if psc.get("runAsUser") == 0:
        bad.append("pod runAsUser: 0")
    containers = [("container", c) for c in spec.get("containers") or []]
    containers += [("initContainer", c) for c in spec.get("initContainers") or []]
    containers += [("ephemeralContainer", c) for c in spec.get("ephemeralContainers") or []]
    for what, c in containers:
        name = f'{what} {c["name"]}'
        sc = c.get("securityContext") or {}
        if sc.get("privileged"):
            bad.append(f"{name}: privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            bad.append(f"{name}: allowPrivilegeEscalation must be false")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            bad.append(f"{name}: capabilities.drop must include ALL")
        added = set(caps.get("add") or [])
        if added - {"NET_BIND_SERVICE"}:
            bad.append(f"{name}: capabilities.add {sorted(added - {'NET_BIND_SERVICE'})} not allowed")
        if added - BASELINE_CAPS:
            bad.append(f"{name}: capabilities.add beyond baseline")
        if sc.get("runAsNonRoot", psc.get("runAsNonRoot")) is not True:
            bad.append(f"{name}: runAsNonRoot must be true (pod or container)")
        if sc.get("runAsUser") == 0:
            bad.append(f"{name}: runAsUser: 0")
        seccomp = (sc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            bad.append(f"{name}: seccompProfile.type must be RuntimeDefault or Localhost, is {seccomp}")
        if (sc.get("procMount") or "Default") != "Default":
            bad.append(f"{name}: procMount must be Default")
        for p in c.get("ports") or []:
            if p.get("hostPort"):
                bad.append(f'{name}: hostPort {p["hostPort"]}')
        se = sc.get("seLinuxOptions") or psc.get("seLinuxOptions") or {}
        if se.get("user") or se.get("role") or se.get("type") not in (None, "", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"):
            bad.append(f"{name}: seLinuxOptions not allowed")
        aa = (sc.get("appArmorProfile") or psc.get("appArmorProfile") or {}).get("type")
        if aa not in (None, "RuntimeDefault", "Localhost"):
            bad.append(f"{name}: appArmorProfile {aa} not allowed")
        if sc.get("windowsOptions", {}).get("hostProcess"):
            bad.append(f"{name}: hostProcess")
    return bad


def main(path):
    failed = False
    pods = 0
    with open(path) as f:
        for doc in yaml.safe_load_all(f):
            if not doc:
                continue
            for name, spec in pod_specs(doc):
                pods += 1
                bad = check(spec)
                for b in bad:
                    print(f"{path}: {name}: {b}")
                failed |= bool(bad)
                if not bad:
                    print(f"{path}: {name}: passes the restricted Pod Security Standard")
    if pods == 0:
        print(f"{path}: no pod templates found")
        return 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
