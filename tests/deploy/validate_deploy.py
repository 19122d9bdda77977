#!/usr/bin/env python3
"""Validates deploy/: the YAML parses, the manifests are consistent with each other, and every
FLYWHEEL_* variable they set is a real flag of the binary it configures (from `--help`).

Usage: validate_deploy.py <repo root> <bin dir>. Exit 0 when valid; prints every problem.
"""
import configparser
import glob
import os
import re
import subprocess
import sys

import yaml

SERVICES = {"capture": 50051, "clustering": 50052, "annotation": 50053, "evalset": 50054}
problems = []


def problem(where, text):
    problems.append(f"{where}: {text}")


def env_names_of(binary, bin_dir):
    out = subprocess.run([os.path.join(bin_dir, binary), "--help"], capture_output=True,
                         text=True, check=True).stdout
    return set(re.findall(r"env (FLYWHEEL_[A-Z0-9_]+)", out))


def check_env(where, binary, names, flags):
    for name in names:
        if name.startswith("FLYWHEEL_") and name not in flags[binary]:
            problem(where, f"{name} is not a flag of {binary}")


def main():
    root, bin_dir = sys.argv[1], sys.argv[2]
    deploy = os.path.join(root, "deploy")
    flags = {f"flywheel-{s}": env_names_of(f"flywheel-{s}", bin_dir) for s in SERVICES}
    flags["flywheel"] = {"FLYWHEEL_DATABASE_URL"}

    # Kubernetes.
    docs = {}
    for path in sorted(glob.glob(os.path.join(deploy, "kubernetes", "*.yaml"))):
        for doc in yaml.safe_load_all(open(path)):
            if doc is None:
                continue
            where = f"{os.path.basename(path)} {doc.get('kind')}/{doc['metadata']['name']}"
            if doc["kind"] != "Namespace" and doc["metadata"].get("namespace") != "flywheel":
                problem(where, "not in namespace flywheel")
            docs[(doc["kind"], doc["metadata"]["name"])] = (where, doc)
    config = docs.get(("ConfigMap", "flywheel-config"))
    config_env = set(config[1]["data"]) if config else set()
    if not config:
        problem("kubernetes", "ConfigMap flywheel-config missing")
    for service, port in SERVICES.items():
        binary = f"flywheel-{service}"
        entry = docs.get(("Deployment", binary))
        if not entry:
            problem("kubernetes", f"Deployment {binary} missing")
            continue
        where, deployment = entry
        spec = deployment["spec"]
        if spec["selector"]["matchLabels"].items() > spec["template"]["metadata"]["labels"].items():
            problem(where, "selector does not match the pod labels")
        (container,) = spec["template"]["spec"]["containers"]
        if container["command"] != [f"/usr/local/bin/{binary}"]:
            problem(where, f"command is not {binary}")
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        if ports.get("grpc") != port:
            problem(where, f"grpc port is not {port}")
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        if env.get("FLYWHEEL_LISTEN") != f"0.0.0.0:{port}":
            problem(where, "FLYWHEEL_LISTEN does not match the grpc port")
        if f"0.0.0.0:{ports.get('metrics')}" != env.get("FLYWHEEL_METRICS_LISTEN"):
            problem(where, "FLYWHEEL_METRICS_LISTEN does not match the metrics port")
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            if container.get(probe, {}).get("grpc", {}).get("port") != port:
                problem(where, f"{probe} is not a gRPC health probe on {port}")
        # envFrom the shared ConfigMap: every variable in it must be a flag of every service
        # (an unknown FLYWHEEL_ variable is harmless to the binary but a typo to the operator).
        check_env(where, binary, set(env) | config_env, flags)
        svc = docs.get(("Service", binary))
        if not svc:
            problem(where, "Service missing")
        else:
            svc_ports = {p["name"]: p for p in svc[1]["spec"]["ports"]}
            if svc_ports.get("grpc", {}).get("port") != port:
                problem(svc[0], f"grpc port is not {port}")
            if svc[1]["spec"]["selector"] != spec["selector"]["matchLabels"]:
                problem(svc[0], "selector does not match the Deployment")
        mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
        key_file = config[1]["data"].get("FLYWHEEL_SERVICE_KEY_FILE", "") if config else ""
        if os.path.dirname(key_file) not in mounts:
            problem(where, "the service key file's directory is not mounted")
    job = docs.get(("Job", "flywheel-migrate"))
    if not job or job[1]["spec"]["template"]["spec"]["containers"][0]["command"][-1] != "migrate":
        problem("kubernetes", "migration Job missing or not running `flywheel migrate`")

    # Compose.
    compose = yaml.safe_load(open(os.path.join(deploy, "compose", "compose.yaml")))
    for service, port in SERVICES.items():
        entry = compose["services"].get(service)
        where = f"compose.yaml {service}"
        if not entry:
            problem(where, "missing")
            continue
        binary = f"flywheel-{service}"
        if entry.get("entrypoint") != [f"/usr/local/bin/{binary}"]:
            problem(where, f"entrypoint is not {binary}")
        env = entry.get("environment", {})
        if env.get("FLYWHEEL_LISTEN") != f"0.0.0.0:{port}":
            problem(where, "FLYWHEEL_LISTEN does not match the service port")
        if f"{port}:{port}" not in entry.get("ports", []):
            problem(where, f"port {port} not published")
        check_env(where, binary, set(env), flags)
        for dependency in ("migrate", "service-key"):
            if dependency not in entry.get("depends_on", {}):
                problem(where, f"does not wait for {dependency}")
        for name, value in env.items():
            if name.endswith("_ADDRESS"):
                host = value.split(":")[0]
                if host not in compose["services"]:
                    problem(where, f"{name} names unknown host {host}")

    # systemd.
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str
    unit.read(os.path.join(deploy, "systemd", "flywheel@.service"))
    if unit.get("Service", "ExecStart", fallback="") != "/usr/local/bin/flywheel-%i":
        problem("flywheel@.service", "ExecStart is not flywheel-%i")
    for service, port in SERVICES.items():
        path = os.path.join(deploy, "systemd", f"{service}.env.example")
        if not os.path.exists(path):
            problem("systemd", f"{service}.env.example missing")
            continue
        env = dict(line.strip().split("=", 1) for line in open(path)
                   if "=" in line and not line.startswith("#"))
        check_env(f"systemd/{service}.env.example", f"flywheel-{service}", set(env), flags)
        if env.get("FLYWHEEL_LISTEN") != f"0.0.0.0:{port}":
            problem(f"systemd/{service}.env.example", "FLYWHEEL_LISTEN does not match")
    common = dict(line.strip().split("=", 1) for line in open(
        os.path.join(deploy, "systemd", "common.env.example")) if "=" in line and
        not line.startswith("#"))
    for service in SERVICES:
        check_env("systemd/common.env.example", f"flywheel-{service}", set(common), flags)

    for line in problems:
        print(line)
    print(f"validate_deploy: {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
