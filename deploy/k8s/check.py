#!/usr/bin/env python3
"""Offline checks of the Kubernetes manifests in this folder (no cluster needed):

  * every resource of kustomization.yaml, and the ConfigMap its configMapGenerator makes,
    against the Kubernetes JSON schema of one pinned version (kubernetes-validate, strict:
    an unknown or misspelt field is an error);
  * every YAML file here is in the kustomization, and every file it names exists;
  * the links a schema cannot see: the StatefulSet's replicas equal shard.count of
    district.toml, POD_INDEX comes from the pod-index label, probes use /healthz and
    /readyz on the port the config listens on, data_dir is the mounted volume, the config
    files the containers are given exist in the ConfigMap, password files are under the
    Secret's mount, every container runs as non-root with a read-only root file system,
    and the dispatcher is one replica with the Recreate strategy.

Usage: check.py [FOLDER]   (exit 0 when all is well, 1 with one line per problem)
Needs kubernetes-validate (and PyYAML), which `make setup` installs in .cache/venv.
"""

import pathlib
import sys
import tomllib

import kubernetes_validate
import yaml

KUBERNETES = "1.31.0"
problems = []


def problem(where, what):
    problems.append(f"{where}: {what}")


def validate(doc, where):
    try:
        kubernetes_validate.validate(doc, KUBERNETES, strict=True)
    except kubernetes_validate.ValidationError as e:
        path = ".".join(str(p) for p in e.path)
        problem(where, f"{doc.get('kind')} {doc.get('metadata', {}).get('name')}: {path}: {e.message}")
    except (kubernetes_validate.SchemaNotFoundError, kubernetes_validate.InvalidSchemaError) as e:
        problem(where, f"no schema for {doc.get('kind')}: {e}")


def main(here):
    kust = yaml.safe_load((here / "kustomization.yaml").read_text())
    docs = []
    for f in kust.get("resources", []):
        if not (here / f).is_file():
            problem("kustomization.yaml", f"resource {f} does not exist")
            continue
        for doc in yaml.safe_load_all((here / f).read_text()):
            if doc:
                docs.append((f, doc))
                validate(doc, f)
    listed = set(kust.get("resources", []))
    for f in sorted(p.name for p in here.glob("*.yaml")):
        if f != "kustomization.yaml" and f not in listed:
            problem("kustomization.yaml", f"{f} is not among the resources")

    # The ConfigMap as kustomize generates it (the name gets a hash suffix, and kustomize
    # rewrites the references to it).
    configmaps = {}
    for g in kust.get("configMapGenerator", []):
        data = {}
        for f in g.get("files", []):
            if not (here / f).is_file():
                problem("kustomization.yaml", f"configMapGenerator file {f} does not exist")
                continue
            data[pathlib.Path(f).name] = (here / f).read_text()
        cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": g["name"]}, "data": data}
        validate(cm, "configMapGenerator")
        configmaps[g["name"]] = data

    by_kind = {}
    for f, d in docs:
        by_kind.setdefault(d["kind"], []).append((f, d))
    names = {(d["kind"], d["metadata"]["name"]) for _, d in docs}

    for f, d in by_kind.get("StatefulSet", []) + by_kind.get("Deployment", []):
        check_workload(f, d, configmaps, names)
    sts = by_kind.get("StatefulSet", [])
    if len(sts) != 1:
        problem("kustomization.yaml", f"{len(sts)} StatefulSets; want the edge nodes' one")
    deps = by_kind.get("Deployment", [])
    if len(deps) != 1:
        problem("kustomization.yaml", f"{len(deps)} Deployments; want the dispatcher's one")
    for f, d in deps:
        if d["spec"].get("replicas") != 1:
            problem(f, "the dispatcher must run as exactly one replica")
        if d["spec"].get("strategy", {}).get("type") != "Recreate":
            problem(f, "the dispatcher needs strategy Recreate (two must never share its database)")
    for f, d in sts:
        svc = d["spec"].get("serviceName")
        if ("Service", svc) not in names:
            problem(f, f"serviceName {svc} is not a Service here")
        if not d["spec"].get("volumeClaimTemplates"):
            problem(f, "no volumeClaimTemplates: the outbox would not survive a reschedule")


def config_of(container, configmaps, volumes):
    """(file name, text, parsed) of the TOML a container is started with, or None."""
    args = container.get("args", [])
    if "--config" not in args:
        return None
    path = pathlib.PurePosixPath(args[args.index("--config") + 1])
    for m in container.get("volumeMounts", []):
        if path.parent == pathlib.PurePosixPath(m["mountPath"]):
            cm = volumes.get(m["name"], {}).get("configMap", {}).get("name")
            if cm in configmaps and path.name in configmaps[cm]:
                text = configmaps[cm][path.name]
                return path.name, tomllib.loads(text)
    return None


def check_workload(f, d, configmaps, names):
    spec = d["spec"]["template"]["spec"]
    pod_sc = spec.get("securityContext", {})
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    claims = {t["metadata"]["name"] for t in d["spec"].get("volumeClaimTemplates", [])}
    for v in volumes.values():
        pvc = v.get("persistentVolumeClaim", {}).get("claimName")
        if pvc and ("PersistentVolumeClaim", pvc) not in names:
            problem(f, f"volume {v['name']}: claim {pvc} is not a PersistentVolumeClaim here")
        cm = v.get("configMap", {}).get("name")
        if cm and cm not in configmaps and ("ConfigMap", cm) not in names:
            problem(f, f"volume {v['name']}: ConfigMap {cm} is neither generated nor listed")
    for c in spec.get("containers", []):
        where = f"{f}: container {c['name']}"
        sc = c.get("securityContext", {})
        if not (sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) and (sc.get("runAsUser") or pod_sc.get("runAsUser"))):
            problem(where, "must run as non-root with a numeric runAsUser")
        if not sc.get("readOnlyRootFilesystem"):
            problem(where, "the root file system must be read-only")
        if sc.get("allowPrivilegeEscalation", True):
            problem(where, "allowPrivilegeEscalation must be false")
        if "ALL" not in sc.get("capabilities", {}).get("drop", []):
            problem(where, "capabilities must drop ALL")
        for r in ("requests", "limits"):
            for k in ("cpu", "memory"):
                if k not in c.get("resources", {}).get(r, {}):
                    problem(where, f"resources.{r}.{k} is not set")
        mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
        for m in c.get("volumeMounts", []):
            if m["name"] not in volumes and m["name"] not in claims:
                problem(where, f"mount {m['mountPath']}: no volume {m['name']}")
        got = config_of(c, configmaps, volumes)
        if got is None:
            problem(where, "its --config file is not in a mounted ConfigMap")
            continue
        name, cfg = got
        # Probes on the port the node listens on.
        listen = cfg.get("http", {}).get("listen", "127.0.0.1:9090")
        host, _, port = listen.rpartition(":")
        if host in ("127.0.0.1", "localhost", "[::1]"):
            problem(where, f"{name}: http.listen {listen} is loopback; the kubelet's probes cannot reach it")
        elif "token_file" not in cfg.get("http", {}):
            problem(where, f"{name}: http.listen {listen} without http.token_file (the node refuses to start)")
        ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
        if int(port) not in ports.values():
            problem(where, f"{name}: http.listen port {port} is not a containerPort")
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            get = c.get(probe, {}).get("httpGet")
            if not get or get.get("path") != path:
                problem(where, f"{probe} must GET {path}")
            elif ports.get(get["port"], get["port"]) != int(port):
                problem(where, f"{probe} port {get['port']} is not http.listen's {port}")
        # data_dir on a volume (a PersistentVolumeClaim), the rest read-only.
        data_dir = cfg.get("storage", {}).get("data_dir", "/var/lib/gridsight")
        vol = mounts.get(data_dir)
        if vol is None:
            problem(where, f"{name}: data_dir {data_dir} is not a mounted volume")
        elif vol not in claims and "persistentVolumeClaim" not in volumes.get(vol, {}):
            problem(where, f"{name}: data_dir {data_dir} is on {vol}, not a PersistentVolumeClaim")
        if "/tmp" not in mounts:
            problem(where, "no writable /tmp (GStreamer's registry, with a read-only root)")
        # Passwords come from the Secret's mount.
        secret_dirs = [p for p, v in mounts.items() if "secret" in volumes.get(v, {})]
        files = [cfg.get("mqtt", {}).get("password_file"), cfg.get("http", {}).get("token_file")]
        files += [cam.get("password_file") for cam in cfg.get("cameras", [])]
        for pf in filter(None, files):
            if not any(pf.startswith(s.rstrip("/") + "/") for s in secret_dirs):
                problem(where, f"{name}: password file {pf} is not under a Secret's mount {secret_dirs}")
        # The shard: replicas = count, index from the pod index.
        shard = cfg.get("shard")
        if d["kind"] == "StatefulSet":
            if not shard:
                problem(where, f"{name}: no [shard]: every pod would run every camera")
                continue
            if shard.get("count") != d["spec"].get("replicas"):
                problem(where, f"replicas {d['spec'].get('replicas')} but {name} has shard.count = {shard.get('count')}")
            var = shard.get("index_env")
            env = {e["name"]: e for e in c.get("env", [])}
            field = env.get(var, {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
            if var != "HOSTNAME" and field != "metadata.labels['apps.kubernetes.io/pod-index']":
                problem(where, f"{name}: shard.index_env {var} is not the pod-index label (downward API)")
            if cfg.get("dispatch", {}).get("enabled", True):
                problem(where, f"{name}: set [dispatch] enabled = false; the dispatcher Deployment dispatches")


if __name__ == "__main__":
    folder = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else pathlib.Path(__file__).resolve().parent
    main(folder)
    for p in problems:
        print(p)
    if problems:
        sys.exit(1)
    print(f"{folder}: ok (Kubernetes {KUBERNETES}, strict)")
