"""Checks deploy/ against the workspace and the real binaries (run by check.sh; no engine, no cluster).

Every failure is one line `FAIL <file>: <what>`; the last line is `deploy: all passed` or the count of
failures (exit status 1). What is checked:

* deploy/k8s/kustomization.yaml: its `resources` names every manifest of the folder, each exists;
  where a kubectl is on PATH, `kubectl kustomize` (offline) renders the same objects (else skipped).
* every built-in kind in those files: kubernetes-validate, strict (unknown fields rejected), against
  KUBERNETES_VERSION; kinds it has no schema for are allowed only for keda.sh (KEDA's CRDs), which
  are checked here structurally instead (fields, references, the queue name).
* consistency with `lro-api --help` / `lro-worker --help`: every LRO_* variable a container, a
  ConfigMap/Secret it loads, or a compose service sets is one its binary accepts; listen ports and
  the admin port are the binaries' defaults; probes are /readyz and /livez on the admin port; the
  Service's ports; the worker's grace period is above LRO_SHUTDOWN_GRACE + LRO_STOP_GRACE; the api,
  listening beyond loopback, has credentials (k8s) or LRO_AUTH_DISABLED=true (compose only).
* security: non-root, read-only root filesystem, no privilege escalation, ALL capabilities dropped,
  seccomp RuntimeDefault, resource requests.
* deploy/Dockerfile (plain text): stages, the cached manifest layer naming every workspace member,
  `cargo build --release --locked -p …`, the runtime stage's base, non-root USER, COPY --from of the
  three binaries to /usr/local/bin, EXPOSE of the default ports; .dockerignore.
"""

import argparse
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import kubernetes_validate
import yaml

KUBERNETES_VERSION = "1.37.0"
FAILURES = []


def fail(where, what):
    FAILURES.append(f"FAIL {where}: {what}")


def expect(cond, where, what):
    if not cond:
        fail(where, what)
    return cond


# ---- the binaries ----------------------------------------------------------------------------

HELP_ENV = re.compile(r"\[env: (LRO_[A-Z0-9_]+)=[^\]]*\](?: \[default: ([^\]]*)\])?")


def binary_vars(path):
    """{LRO_* variable: default or None} from `BIN --help`, run with no LRO_* in its environment."""
    out = subprocess.run(
        [path, "--help"],
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found = {m.group(1): m.group(2) for m in HELP_ENV.finditer(out)}
    if not found:
        raise SystemExit(f"no [env: LRO_*] in `{path} --help`")
    return found


def port_of(addr):
    return int(addr.rsplit(":", 1)[1])


def host_of(addr):
    return addr.rsplit(":", 1)[0].strip("[]")


def seconds(text):
    m = re.fullmatch(r"(\d+)(ms|s|m|h)?", str(text).strip())
    if not m:
        raise ValueError(f"cannot read duration {text!r}")
    n, unit = int(m.group(1)), m.group(2) or "s"
    return n * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]


def is_loopback(host):
    return host in ("localhost", "::1") or host.startswith("127.")


# ---- Kubernetes ------------------------------------------------------------------------------

KEDA_SCALEDOBJECT_SPEC = {
    "scaleTargetRef", "pollingInterval", "cooldownPeriod", "initialCooldownPeriod",
    "idleReplicaCount", "minReplicaCount", "maxReplicaCount", "fallback", "advanced", "triggers",
}
KEDA_TRIGGER = {"type", "metadata", "name", "useCachedMetrics", "authenticationRef", "metricType"}
KEDA_RABBITMQ_METADATA = {
    "host", "protocol", "queueName", "mode", "value", "activationValue", "vhostName",
    "excludeUnacknowledged", "useRegex", "operation", "timeout", "unsafeSsl", "hostFromEnv",
}


def load_k8s(k8s_dir):
    kust_file = k8s_dir / "kustomization.yaml"
    kust = yaml.safe_load(kust_file.read_text())
    expect(kust.get("kind") == "Kustomization", kust_file, "kind is not Kustomization")
    resources = kust.get("resources") or []
    on_disk = sorted(
        p.name for p in k8s_dir.iterdir()
        if p.suffix in (".yaml", ".yml") and p.name != "kustomization.yaml"
    )
    for name in on_disk:
        expect(name in resources, kust_file, f"resources does not name {name}")
    for name in resources:
        expect((k8s_dir / name).is_file(), kust_file, f"resource {name} does not exist")
    objects = []
    for name in resources:
        path = k8s_dir / name
        if not path.is_file():
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                objects.append((path, doc))
    return objects


def validate_schemas(objects):
    for path, obj in objects:
        kind, api = obj.get("kind"), obj.get("apiVersion", "")
        where = f"{path.name} {kind}/{obj.get('metadata', {}).get('name')}"
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
            print(f"ok   {where}: valid against Kubernetes {KUBERNETES_VERSION} (strict)")
        except kubernetes_validate.SchemaNotFoundError:
            if api.startswith("keda.sh/"):
                print(f"ok   {where}: KEDA CRD, no schema shipped: checked structurally")
            else:
                fail(where, f"no schema for {api} {kind} in Kubernetes {KUBERNETES_VERSION}")
        except kubernetes_validate.ValidationError as e:
            fail(where, f"invalid: {e.message} at {'/'.join(map(str, e.path))}")


def render(k8s_dir, objects):
    """Where a kubectl is on PATH, `kubectl kustomize` (offline) must render the same objects."""
    try:
        out = subprocess.run(["kubectl", "kustomize", str(k8s_dir)], capture_output=True, text=True, timeout=120)
    except FileNotFoundError:
        print("skip kubectl kustomize: no kubectl here (each file was validated on its own)")
        return
    if not expect(out.returncode == 0, "kustomization.yaml", f"kubectl kustomize failed: {out.stderr.strip()}"):
        return
    rendered = sorted((o["kind"], o["metadata"]["name"]) for o in yaml.safe_load_all(out.stdout) if o)
    files = sorted((o["kind"], o["metadata"]["name"]) for _, o in objects)
    if expect(rendered == files, "kustomization.yaml", f"kubectl kustomize rendered {rendered}, the files hold {files}"):
        print(f"ok   kubectl kustomize: renders the same {len(rendered)} objects")


def by_kind(objects, kind):
    return {o["metadata"]["name"]: o for _, o in objects if o.get("kind") == kind}


def check_keda(objects, namespace):
    deployments = by_kind(objects, "Deployment")
    auths = by_kind(objects, "TriggerAuthentication")
    secrets = by_kind(objects, "Secret")
    scaled = by_kind(objects, "ScaledObject")
    expect(scaled, "k8s", "no KEDA ScaledObject")
    for name, ta in auths.items():
        where = f"TriggerAuthentication/{name}"
        expect(ta.get("apiVersion") == "keda.sh/v1alpha1", where, "apiVersion is not keda.sh/v1alpha1")
        for ref in ta.get("spec", {}).get("secretTargetRef", []):
            expect(set(ref) == {"parameter", "name", "key"}, where, f"secretTargetRef fields {sorted(ref)}")
            secret = secrets.get(ref.get("name"))
            if expect(secret is not None, where, f"Secret {ref.get('name')} is not in the manifests"):
                keys = set(secret.get("stringData", {})) | set(secret.get("data", {}))
                expect(ref.get("key") in keys, where, f"Secret {ref['name']} has no key {ref.get('key')}")
    for name, so in scaled.items():
        where = f"ScaledObject/{name}"
        spec = so.get("spec", {})
        expect(so.get("apiVersion") == "keda.sh/v1alpha1", where, "apiVersion is not keda.sh/v1alpha1")
        extra = set(spec) - KEDA_SCALEDOBJECT_SPEC
        expect(not extra, where, f"unknown spec fields {sorted(extra)}")
        target = spec.get("scaleTargetRef", {})
        dep = deployments.get(target.get("name"))
        expect(dep is not None, where, f"scaleTargetRef {target.get('name')} is not a Deployment here")
        if dep is not None:
            cmd = dep["spec"]["template"]["spec"]["containers"][0].get("command", [None])[0]
            expect(cmd == "lro-worker", where, "scales something other than the workers")
        lo, hi = spec.get("minReplicaCount", 0), spec.get("maxReplicaCount", 100)
        expect(isinstance(lo, int) and isinstance(hi, int) and 0 <= lo <= hi, where, "replica bounds")
        triggers = spec.get("triggers") or []
        expect(triggers, where, "no triggers")
        for t in triggers:
            expect(not set(t) - KEDA_TRIGGER, where, f"unknown trigger fields {sorted(set(t) - KEDA_TRIGGER)}")
            expect(t.get("type") == "rabbitmq", where, f"trigger type {t.get('type')}, not rabbitmq")
            md = t.get("metadata", {})
            extra = set(md) - KEDA_RABBITMQ_METADATA
            expect(not extra, where, f"unknown rabbitmq metadata {sorted(extra)}")
            expect(all(isinstance(v, str) for v in md.values()), where, "metadata values must be strings")
            expect(md.get("queueName") == f"{namespace}.jobs", where,
                   f"queueName {md.get('queueName')!r}, the jobs queue is {namespace}.jobs")
            expect(md.get("mode") == "QueueLength", where, "mode is not QueueLength")
            expect(str(md.get("value", "")).isdigit(), where, "value is not a whole number")
            expect("host" not in md, where, "host in plain metadata: it holds a password")
            ref = (t.get("authenticationRef") or {}).get("name")
            ta = auths.get(ref)
            if expect(ta is not None, where, f"authenticationRef {ref} is not a TriggerAuthentication here"):
                params = {r.get("parameter") for r in ta.get("spec", {}).get("secretTargetRef", [])}
                expect("host" in params, where, f"TriggerAuthentication {ref} does not give host")


def container_env(where, container, configmaps, secrets):
    """{name: value or None (from a secret or fieldRef)} of a container, envFrom resolved."""
    env = {}
    for src in container.get("envFrom", []):
        if "configMapRef" in src:
            cm = configmaps.get(src["configMapRef"]["name"])
            if expect(cm is not None, where, f"ConfigMap {src['configMapRef']['name']} is not here"):
                env.update(cm.get("data", {}))
        elif "secretRef" in src:
            s = secrets.get(src["secretRef"]["name"])
            if expect(s is not None, where, f"Secret {src['secretRef']['name']} is not here"):
                env.update({k: None for k in list(s.get("stringData", {})) + list(s.get("data", {}))})
    for e in container.get("env", []):
        env[e["name"]] = e.get("value")
    return env


def check_workloads(objects, bins):
    configmaps = by_kind(objects, "ConfigMap")
    secrets = by_kind(objects, "Secret")
    services = by_kind(objects, "Service")
    used_configmaps = set()
    seen = set()
    for name, dep in by_kind(objects, "Deployment").items():
        pod = dep["spec"]["template"]["spec"]
        labels = dep["spec"]["template"]["metadata"].get("labels", {})
        pod_sc = pod.get("securityContext", {})
        for c in pod.get("containers", []):
            where = f"Deployment/{name} container {c['name']}"
            binary = (c.get("command") or [None])[0]
            if not expect(binary in bins, where, f"command {binary!r} is not lro-api or lro-worker"):
                continue
            seen.add(binary)
            accepted = bins[binary]
            used_configmaps |= {s["configMapRef"]["name"] for s in c.get("envFrom", []) if "configMapRef" in s}
            env = container_env(where, c, configmaps, secrets)
            for var in sorted(env):
                expect(not var.startswith("LRO_") or var in accepted, where,
                       f"{var} is not a variable {binary} accepts")
                expect(var.startswith("LRO_"), where, f"{var} is not an LRO_* variable")

            def value(var):
                return env.get(var) or accepted.get(var)

            # Listen addresses: reachable from the kubelet and the Service, on the default ports.
            addrs = {"LRO_ADMIN_ADDR": "admin"}
            if binary == "lro-api":
                addrs |= {"LRO_HTTP_ADDR": "http", "LRO_GRPC_ADDR": "grpc"}
            ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
            for var, port_name in addrs.items():
                addr = value(var)
                expect(host_of(addr) in ("0.0.0.0", "::"), where, f"{var}={addr} is not reachable from outside the pod")
                expect(port_of(addr) == port_of(accepted[var]), where,
                       f"{var}={addr}: not the default port {port_of(accepted[var])}")
                expect(ports.get(port_name) == port_of(addr), where,
                       f"containerPort {port_name} is {ports.get(port_name)}, {var} listens on {port_of(addr)}")
            admin = port_of(value("LRO_ADMIN_ADDR"))
            for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/livez")):
                get = (c.get(probe) or {}).get("httpGet")
                if expect(get is not None, where, f"no {probe} httpGet"):
                    expect(get.get("path") == path, where, f"{probe} path {get.get('path')}, not {path}")
                    expect(get.get("port") in ("admin", admin), where, f"{probe} port {get.get('port')} is not the admin port")
            # Authentication: the api listens beyond loopback, so it must have credentials.
            if binary == "lro-api":
                creds = [v for v in ("LRO_AUTH_HS256_SECRET_FILE", "LRO_AUTH_JWKS_FILE", "LRO_API_KEYS_FILE") if env.get(v)]
                expect(creds, where, "no credentials (LRO_AUTH_HS256_SECRET_FILE, LRO_AUTH_JWKS_FILE or LRO_API_KEYS_FILE)")
                expect(str(env.get("LRO_AUTH_DISABLED", "false")).lower() != "true", where, "LRO_AUTH_DISABLED=true in a cluster")
                volumes = {v["name"]: v for v in pod.get("volumes", [])}
                for var in creds:
                    file = Path(env[var])
                    mount = next((m for m in c.get("volumeMounts", []) if Path(m["mountPath"]) == file.parent), None)
                    if not expect(mount is not None, where, f"{var}={file}: no volume mounted at {file.parent}"):
                        continue
                    secret_name = volumes.get(mount["name"], {}).get("secret", {}).get("secretName")
                    secret = secrets.get(secret_name)
                    if expect(secret is not None, where, f"{var}: the volume {mount['name']} is not a Secret here"):
                        keys = set(secret.get("stringData", {})) | set(secret.get("data", {}))
                        expect(file.name in keys, where, f"{var}: Secret {secret_name} has no key {file.name}")
                svc = [s for s in services.values()
                       if s["spec"].get("selector") and all(labels.get(k) == v for k, v in s["spec"]["selector"].items())]
                if expect(svc, where, "no Service selects the api"):
                    sp = {p["name"]: p for p in svc[0]["spec"]["ports"]}
                    for port_name, var in (("http", "LRO_HTTP_ADDR"), ("grpc", "LRO_GRPC_ADDR"), ("admin", "LRO_ADMIN_ADDR")):
                        p = sp.get(port_name)
                        if expect(p is not None, where, f"the Service has no port {port_name}"):
                            expect(p["port"] == port_of(accepted[var]), where,
                                   f"Service port {port_name} is {p['port']}, not {port_of(accepted[var])}")
                            expect(p.get("targetPort") in (port_name, port_of(value(var))), where,
                                   f"Service port {port_name} targets {p.get('targetPort')}")
                pdbs = [p for _, p in objects if p.get("kind") == "PodDisruptionBudget"
                        and all(labels.get(k) == v for k, v in p["spec"]["selector"]["matchLabels"].items())]
                expect(pdbs, where, "no PodDisruptionBudget for the api")
            else:
                grace = seconds(value("LRO_SHUTDOWN_GRACE")) + seconds(value("LRO_STOP_GRACE"))
                tgps = pod.get("terminationGracePeriodSeconds", 30)
                expect(tgps > grace, where,
                       f"terminationGracePeriodSeconds {tgps} is not above LRO_SHUTDOWN_GRACE + LRO_STOP_GRACE = {grace:g}s")
                wid = next((e for e in c.get("env", []) if e["name"] == "LRO_WORKER_ID"), None)
                expect(wid and wid.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name",
                       where, "LRO_WORKER_ID is not the pod's name (each worker needs its own)")
            # Security.
            sc = c.get("securityContext", {})

            def either(key):
                return sc.get(key, pod_sc.get(key))

            expect(either("runAsNonRoot") is True, where, "runAsNonRoot is not true")
            expect(either("runAsUser") not in (0,), where, "runAsUser is 0")
            expect(sc.get("readOnlyRootFilesystem") is True, where, "readOnlyRootFilesystem is not true")
            expect(sc.get("allowPrivilegeEscalation") is False, where, "allowPrivilegeEscalation is not false")
            expect(sc.get("privileged") is not True, where, "privileged")
            expect("ALL" in sc.get("capabilities", {}).get("drop", []), where, "capabilities do not drop ALL")
            expect(not sc.get("capabilities", {}).get("add"), where, "capabilities added")
            expect((either("seccompProfile") or {}).get("type") == "RuntimeDefault", where, "seccompProfile is not RuntimeDefault")
            res = c.get("resources", {})
            expect({"cpu", "memory"} <= set(res.get("requests", {})), where, "no cpu and memory requests")
            expect("memory" in res.get("limits", {}), where, "no memory limit")
    for binary in ("lro-api", "lro-worker"):
        expect(binary in seen, "k8s", f"no Deployment runs {binary}")
    for name in configmaps:
        expect(name in used_configmaps, f"ConfigMap/{name}", "loaded by no container")


# ---- compose ---------------------------------------------------------------------------------

def check_compose(path, bins, k8s_vars):
    compose = yaml.safe_load(path.read_text())
    services = compose.get("services", {})
    where0 = path.name
    redis = [s for s in services.values() if str(s.get("image", "")).startswith("redis")]
    rabbit = [s for s in services.values() if str(s.get("image", "")).startswith("rabbitmq")]
    expect(redis and "redis-cli ping" in " ".join(redis[0].get("healthcheck", {}).get("test", [])),
           where0, "no Redis with a redis-cli ping health check")
    expect(rabbit and "rabbitmq-diagnostics" in rabbit[0].get("healthcheck", {}).get("test", [])
           and "ping" in rabbit[0]["healthcheck"]["test"], where0, "no RabbitMQ with a rabbitmq-diagnostics ping health check")
    counts = {"lro-api": 0, "lro-worker": 0}
    worker_ids = []
    compose_vars = {"lro-api": set(), "lro-worker": set()}
    for name, svc in services.items():
        where = f"{where0} service {name}"
        binary = (svc.get("command") or [None])[0]
        if binary not in bins:
            continue
        counts[binary] += 1
        accepted = bins[binary]
        build = svc.get("build", {})
        expect(build.get("dockerfile") == "deploy/Dockerfile" and build.get("context") == "..", where,
               "not built from deploy/Dockerfile with the repository as context")
        env = {k: str(v) for k, v in (svc.get("environment") or {}).items()}
        for var in sorted(env):
            expect(var in accepted, where, f"{var} is not a variable {binary} accepts")
        compose_vars[binary] |= set(env)

        def value(var):
            return env.get(var) or accepted.get(var)

        addrs = ["LRO_ADMIN_ADDR"] + (["LRO_HTTP_ADDR", "LRO_GRPC_ADDR"] if binary == "lro-api" else [])
        published = {int(str(p).rsplit(":", 1)[1]) for p in svc.get("ports", [])}
        for p in svc.get("ports", []):
            expect(str(p).count(":") == 2 and str(p).startswith("127.0.0.1:"), where,
                   f"port {p} is published beyond 127.0.0.1 (authentication is off)")
        for var in addrs:
            addr = value(var)
            expect(host_of(addr) == "0.0.0.0", where, f"{var}={addr}: not reachable from outside the container")
            expect(port_of(addr) == port_of(accepted[var]), where, f"{var}={addr}: not the default port")
            expect(port_of(addr) in published, where, f"{var}'s port {port_of(addr)} is not published")
        test = " ".join(map(str, svc.get("healthcheck", {}).get("test", [])))
        admin = port_of(value("LRO_ADMIN_ADDR"))
        expect("/readyz" in test and f"/{admin} " in test.replace("/dev/tcp/127.0.0.1/", "/"), where,
               f"health check does not ask /readyz on the admin port {admin}")
        expect("curl" not in test and "wget" not in test, where, "health check uses a tool the image lacks")
        if binary == "lro-api":
            listens_out = not all(is_loopback(host_of(value(v))) for v in ("LRO_HTTP_ADDR", "LRO_GRPC_ADDR"))
            creds = any(env.get(v) for v in ("LRO_AUTH_HS256_SECRET_FILE", "LRO_AUTH_JWKS_FILE", "LRO_API_KEYS_FILE"))
            expect(not listens_out or creds or env.get("LRO_AUTH_DISABLED") == "true", where,
                   "listens beyond loopback without credentials or LRO_AUTH_DISABLED=true: lro-api would refuse")
        else:
            worker_ids.append(env.get("LRO_WORKER_ID"))
            grace = seconds(value("LRO_SHUTDOWN_GRACE")) + seconds(value("LRO_STOP_GRACE"))
            expect(seconds(svc.get("stop_grace_period", "10s")) > grace, where,
                   f"stop_grace_period is not above LRO_SHUTDOWN_GRACE + LRO_STOP_GRACE = {grace:g}s")
    expect(counts["lro-api"] == 1, where0, f"{counts['lro-api']} api services, not 1")
    expect(counts["lro-worker"] >= 2, where0, f"{counts['lro-worker']} worker services, not 2 or more")
    expect(all(worker_ids) and len(set(worker_ids)) == len(worker_ids), where0,
           f"workers' LRO_WORKER_ID not set and distinct: {worker_ids}")
    # The same settings on both: what k8s sets, compose sets (bar the cluster-only ones).
    cluster_only = {"LRO_AUTH_HS256_SECRET_FILE", "LRO_AUTH_JWKS_FILE", "LRO_API_KEYS_FILE", "LRO_AUTH_ISSUER",
                    "LRO_AUTH_AUDIENCE", "LRO_MAX_WAIT", "LRO_RETENTION", "LRO_LEASE", "LRO_RETRY_BACKOFF"}
    for binary in compose_vars:
        missing = k8s_vars.get(binary, set()) - compose_vars[binary] - cluster_only
        expect(not missing, where0, f"{binary}: set in deploy/k8s but not here: {sorted(missing)}")
        missing = compose_vars[binary] - k8s_vars.get(binary, set()) - {"LRO_AUTH_DISABLED"}
        expect(not missing, where0, f"{binary}: set here but not in deploy/k8s: {sorted(missing)}")


def k8s_vars_by_binary(objects):
    configmaps, secrets = by_kind(objects, "ConfigMap"), by_kind(objects, "Secret")
    out = {}
    for name, dep in by_kind(objects, "Deployment").items():
        for c in dep["spec"]["template"]["spec"].get("containers", []):
            binary = (c.get("command") or [None])[0]
            out.setdefault(binary, set()).update(container_env("k8s", c, configmaps, secrets))
    return out


# ---- Dockerfile ------------------------------------------------------------------------------

def dockerfile_instructions(text):
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    lines, cur = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not cur and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            cur += line[:-1] + " "
            continue
        cur += line
        word, _, rest = cur.partition(" ")
        lines.append((word.upper(), rest.strip()))
        cur = ""
    return lines


def check_dockerfile(repo, bins):
    path = repo / "deploy" / "Dockerfile"
    where = "deploy/Dockerfile"
    stages = []  # [{name, base, instrs}]
    for ins, args in dockerfile_instructions(path.read_text()):
        if ins == "FROM":
            m = re.fullmatch(r"(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", args, re.I)
            stages.append({"base": m.group(1), "name": m.group(2), "instrs": []})
        elif expect(stages, where, f"{ins} before FROM"):
            stages[-1]["instrs"].append((ins, args))
    if not expect(len(stages) >= 2, where, "not multi-stage"):
        return
    builder, runtime = stages[0], stages[-1]
    expect(re.fullmatch(r"rust:[\w.-]+", builder["base"]) is not None, where, f"builder base {builder['base']} is not the official rust image")
    expect(builder["name"], where, "the builder stage has no name")
    workspace = tomllib.loads((repo / "Cargo.toml").read_text())["workspace"]
    members = workspace["members"]
    runs = [(i, a) for i, (ins, a) in enumerate(builder["instrs"]) if ins == "RUN"]
    copies = [(i, a) for i, (ins, a) in enumerate(builder["instrs"]) if ins == "COPY"]
    builds = [(i, a) for i, a in runs if "cargo build" in a]
    expect(len(builds) >= 2, where, "no separate dependency build (stub sources) and real build")
    for i, a in builds:
        expect("--release" in a and "--locked" in a, where, f"cargo build without --release --locked: {a}")
        for pkg in ("lro-api", "lro-worker", "lro-cli"):
            expect(re.search(rf"-p {pkg}(\s|$)", a), where, f"cargo build does not build -p {pkg}")
    if builds:
        first = builds[0][0]
        early = " ".join(a for i, a in copies if i < first)
        for m in members:
            expect(f"{m}/Cargo.toml" in early, where, f"the dependency layer does not copy {m}/Cargo.toml")
        expect("Cargo.lock" in early, where, "the dependency layer does not copy Cargo.lock")
        expect(not re.search(r"\b(src|proto)\b", early.replace("Cargo.toml", "")), where,
               "the dependency layer copies sources (it would not be cached)")
        late = " ".join(a for i, a in copies if i > first)
        for m in members + ["proto"]:
            expect(re.search(rf"(^|\s){m}(/)?\s", late + " "), where, f"the real build does not copy {m}")
    expect(not any("fuzz" in a for _, a in copies), where, "copies fuzz/ (not a workspace member)")
    expect(runtime["base"] == "debian:bookworm-slim", where, f"runtime base {runtime['base']}")
    rt = runtime["instrs"]
    expect(any(i == "RUN" and "ca-certificates" in a for i, a in rt), where, "runtime does not install ca-certificates")
    users = [a for i, a in rt if i == "USER"]
    if expect(users, where, "the final stage has no USER (runs as root)"):
        user = users[-1].split(":")[0]
        expect(user not in ("root", "0"), where, f"the final stage runs as {users[-1]}")
        expect(user.isdigit(), where, "USER is not numeric (runAsNonRoot cannot verify a name)")
    cli_bin = tomllib.loads((repo / "cli" / "Cargo.toml").read_text())["bin"][0]["name"]
    copied = {}
    for i, a in rt:
        if i == "COPY":
            m = re.fullmatch(r"--from=(\S+)\s+(\S+)\s+(\S+)", a)
            if m:
                copied[Path(m.group(3)).name if not m.group(3).endswith("/") else Path(m.group(2)).name] = (m.group(1), m.group(3))
    for b in ("lro-api", "lro-worker", cli_bin):
        src = copied.get(b)
        if expect(src, where, f"the final stage does not COPY --from the builder {b}"):
            expect(src[0] == builder["name"], where, f"{b} is copied from {src[0]}, not {builder['name']}")
            expect(src[1].startswith("/usr/local/bin"), where, f"{b} is not put in /usr/local/bin")
    exposed = {int(p.split("/")[0]) for i, a in rt if i == "EXPOSE" for p in a.split()}
    want = {port_of(bins["lro-api"][v]) for v in ("LRO_HTTP_ADDR", "LRO_GRPC_ADDR", "LRO_ADMIN_ADDR")}
    want.add(port_of(bins["lro-worker"]["LRO_ADMIN_ADDR"]))
    expect(exposed == want, where, f"EXPOSE {sorted(exposed)}, the binaries' ports are {sorted(want)}")
    ignore = {l.strip().rstrip("/") for l in (repo / ".dockerignore").read_text().splitlines()
              if l.strip() and not l.startswith("#")}
    for need in ("target", "fuzz/target", ".git"):
        expect(need in ignore, ".dockerignore", f"does not ignore {need}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repo", required=True, type=Path)
    ap.add_argument("--api-bin", required=True)
    ap.add_argument("--worker-bin", required=True)
    args = ap.parse_args()
    repo = args.repo.resolve()
    bins = {"lro-api": binary_vars(args.api_bin), "lro-worker": binary_vars(args.worker_bin)}
    for b, v in bins.items():
        print(f"ok   {b} --help: {len(v)} LRO_* variables")
    objects = load_k8s(repo / "deploy" / "k8s")
    validate_schemas(objects)
    namespace = next((cm["data"]["LRO_NAMESPACE"] for cm in by_kind(objects, "ConfigMap").values()
                      if "LRO_NAMESPACE" in cm.get("data", {})), bins["lro-worker"]["LRO_NAMESPACE"])
    check_keda(objects, namespace)
    render(repo / "deploy" / "k8s", objects)
    check_workloads(objects, bins)
    check_compose(repo / "deploy" / "compose.yaml", bins, k8s_vars_by_binary(objects))
    check_dockerfile(repo, bins)
    for f in FAILURES:
        print(f)
    if FAILURES:
        print(f"deploy: {len(FAILURES)} failed")
        sys.exit(1)
    print("deploy: all passed")


if __name__ == "__main__":
    main()
