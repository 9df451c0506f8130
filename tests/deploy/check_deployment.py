#!/usr/bin/python3
"""Checks the shipped deployment files offline (no cluster needed):
  - the systemd units pass `systemd-analyze verify` (with ExecStart pointed at
    the built `sage`), and every flag they pass exists in `sage cluster start`;
  - the Kubernetes manifests parse, their Service selects the head's pods and
    names the ports the head listens on, the workers reach the head through
    that Service, the token comes from the Secret the docs make, and every
    flag in their args exists in `sage cluster start`.
Usage: check_deployment.py SOURCE_DIR SAGE_BINARY. Exits non-zero naming what
is wrong."""
import os
import re
import subprocess
import sys
import tempfile

import yaml

source, sage = sys.argv[1], os.path.abspath(sys.argv[2])
problems = []
start_help = subprocess.run([sage, "cluster", "start", "--help"], capture_output=True,
                            text=True, check=True).stdout
known_flags = set(re.findall(r"(--[a-z][a-z-]*)", start_help))


def check_flags(where, words):
    for word in words:
        flag = word.split("=", 1)[0]
        if flag.startswith("--") and flag not in known_flags:
            problems.append(f"{where}: `sage cluster start` has no flag {flag}")


# systemd
units = os.path.join(source, "deploy", "systemd")
with tempfile.TemporaryDirectory() as scratch:
    for name in sorted(os.listdir(units)):
        text = open(os.path.join(units, name)).read()
        for line in text.splitlines():
            if line.startswith("ExecStart="):
                check_flags(name, line.split()[3:])
        with open(os.path.join(scratch, name), "w") as unit:
            unit.write(text.replace("/usr/local/bin/sage", sage))
    names = [n.replace("@.service", "@w1.service") for n in sorted(os.listdir(units))]
    verify = subprocess.run(["systemd-analyze", "verify"] + names, cwd=scratch,
                            capture_output=True, text=True)
    if verify.returncode != 0 or verify.stderr.strip():
        problems.append("systemd-analyze verify: " + (verify.stderr or verify.stdout).strip())

# Kubernetes
documents = list(yaml.safe_load_all(open(os.path.join(source, "deploy", "kubernetes",
                                                      "sage.yaml"))))
by_kind = {(d["kind"], d["metadata"]["name"]): d for d in documents}
service = by_kind.get(("Service", "sage-head"))
head = by_kind.get(("StatefulSet", "sage-head"))
workers = by_kind.get(("Deployment", "sage-worker"))
if not (service and head and workers):
    problems.append("sage.yaml needs Service sage-head, StatefulSet sage-head and Deployment "
                    "sage-worker; it has " + ", ".join(f"{k} {n}" for k, n in by_kind))
else:
    head_pod = head["spec"]["template"]
    labels = head_pod["metadata"]["labels"]
    if any(labels.get(k) != v for k, v in service["spec"]["selector"].items()):
        problems.append("the Service sage-head does not select the head's pods")
    if head["spec"]["selector"]["matchLabels"] != labels:
        problems.append("the head's StatefulSet selector does not match its pods")
    container = head_pod["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for port in service["spec"]["ports"]:
        if port["targetPort"] not in ports:
            problems.append(f"Service port {port['name']} targets no port of the head")
    args = container["args"]
    check_flags("the head", args)
    for flag, name in (("--port", "cluster"), ("--jobmanager-port", "jobmanager"),
                       ("--dashboard-port", "dashboard")):
        if (name in ports or name != "dashboard") and f"{flag}={ports.get(name)}" not in args:
            problems.append(f"the head's {flag} is not its {name} port {ports.get(name)}")
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    state = [e["value"] for e in container["env"] if e["name"] == "SAGE_STATE_DIR"]
    if not state or state[0] not in mounts:
        problems.append("the head's state directory is not on its volume")
    worker = workers["spec"]["template"]["spec"]["containers"][0]
    check_flags("the workers", worker["args"])
    if f"--head-address=sage-head:{ports.get('cluster')}" not in worker["args"]:
        problems.append("the workers do not join the head through the Service sage-head")
    for pod in (container, worker):
        secrets = [e["valueFrom"]["secretKeyRef"] for e in pod["env"]
                   if e["name"] == "SAGE_TOKEN" and "valueFrom" in e]
        if secrets != [{"name": "sage-token", "key": "token"}]:
            problems.append(f"{pod['name']} does not take SAGE_TOKEN from Secret sage-token")
    names = {e["name"] for e in worker["env"]}
    for word in worker["args"]:
        for variable in re.findall(r"\$\((\w+)\)", word):
            if variable not in names:
                problems.append(f"the workers' args use $({variable}), which is not in env")

for problem in problems:
    print("check_deployment:", problem)
sys.exit(1 if problems else 0)
