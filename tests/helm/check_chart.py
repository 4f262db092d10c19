"""The Helm chart in deploy/helm/talaria, checked with Helm's own code (the
helm-python-sdk wheel bundles Helm 4 as a library) and validated against
the Kubernetes schemas (kubernetes-validate), without a cluster.

Run by tests/integration/helm_chart.rs: python check_chart.py CHART OUT_DIR.
Exits non-zero with the reason on the first failed check.
"""

import pathlib
import subprocess
import sys

import helm_python
import yaml

chart_dir, out_dir = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
validate = pathlib.Path(sys.executable).with_name("kubernetes-validate")


def fail(message):
    print(f"check_chart: {message}", file=sys.stderr)
    sys.exit(1)


lint = helm_python.lint(str(chart_dir), strict=True)
problems = [m for m in lint["messages"] if m["severity"] >= 2] + lint["errors"]
if problems:
    fail(f"helm lint --strict: {problems}")

chart = helm_python.Chart.load(str(chart_dir))


def render(name, values):
    manifests = chart.render(values, name="demo", namespace="ai", is_install=True)
    documents = []
    for template, text in sorted(manifests.items()):
        if template.endswith("NOTES.txt") or not text.strip():
            continue
        path = out_dir / name / pathlib.Path(template).name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        documents.extend(d for d in yaml.safe_load_all(text) if d)
        run = subprocess.run(
            [str(validate), "--strict", "--quiet", str(path)], capture_output=True, text=True
        )
        if run.returncode != 0:
            fail(f"{name}: {template} does not validate: {run.stdout}{run.stderr}")
    return {(d["kind"], d["metadata"]["name"]): d for d in documents}


# Defaults: one pod, Recreate, non-root, read-only root, no capabilities.
default = render("default", {})
kinds = sorted(kind for kind, _ in default)
if kinds != ["Deployment", "PersistentVolumeClaim", "Secret", "Service"]:
    fail(f"default resources: {kinds}")
deployment = default[("Deployment", "demo-talaria")]
spec = deployment["spec"]
if spec["replicas"] != 1 or spec["strategy"]["type"] != "Recreate":
    fail(f"one pod per data home, stopped before the next: {spec['replicas']} {spec['strategy']}")
pod = spec["template"]["spec"]
security = pod["securityContext"]
expected_pod = {"runAsNonRoot": True, "runAsUser": 10000, "runAsGroup": 10000, "fsGroup": 10000}
if any(security.get(k) != v for k, v in expected_pod.items()) or security["seccompProfile"]["type"] != "RuntimeDefault":
    fail(f"pod security context: {security}")
container = pod["containers"][0]
if container["securityContext"] != {
    "readOnlyRootFilesystem": True,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
}:
    fail(f"container security context: {container['securityContext']}")
for probe in ("livenessProbe", "readinessProbe"):
    if container[probe]["httpGet"] != {"path": "/health", "port": "http"}:
        fail(f"{probe}: {container[probe]}")
mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
if mounts != {"/opt/data": "data", "/tmp": "tmp"}:
    fail(f"mounts: {mounts}")
volumes = {v["name"]: v for v in pod["volumes"]}
if volumes["data"]["persistentVolumeClaim"]["claimName"] != "demo-talaria":
    fail(f"the data volume: {volumes['data']}")
env = {e["name"]: e.get("value") for e in container["env"]}
# The dashboard beyond loopback needs a password first: off by default.
if env.get("TALARIA_HOME") != "/opt/data" or env.get("TALARIA_DASHBOARD") != "0":
    fail(f"environment: {env}")
if container["envFrom"] != [{"secretRef": {"name": "demo-talaria"}}]:
    fail(f"keys from the chart's Secret: {container['envFrom']}")
secret = default[("Secret", "demo-talaria")]
if len(secret["data"]["TALARIA_API_KEY"]) < 40:
    fail("a generated API key")
if default[("PersistentVolumeClaim", "demo-talaria")]["metadata"]["annotations"] != {"helm.sh/resource-policy": "keep"}:
    fail("the data outlives an uninstall")

# Everything optional at once: an existing Secret, an existing claim, an
# ingress, a network policy, the dashboard, a model.
full = render(
    "full",
    {
        "secret": {"existingSecret": "my-keys"},
        "persistence": {"existingClaim": "my-data"},
        "ingress": {"enabled": True, "className": "nginx", "hosts": [{"host": "talaria.example.com"}],
                    "tls": [{"secretName": "t-tls", "hosts": ["talaria.example.com"]}]},
        "networkPolicy": {"enabled": True, "from": [{"podSelector": {"matchLabels": {"role": "client"}}}]},
        "dashboard": {"enabled": True, "port": 9119},
        "model": {"baseUrl": "http://llm.ai.svc:8080/v1", "name": "local"},
    },
)
kinds = sorted(kind for kind, _ in full)
if kinds != ["Deployment", "Ingress", "NetworkPolicy", "Service"]:
    fail(f"with an existing Secret and claim: {kinds}")
pod = full[("Deployment", "demo-talaria")]["spec"]["template"]["spec"]
container = pod["containers"][0]
if container["envFrom"] != [{"secretRef": {"name": "my-keys"}}]:
    fail(f"the existing Secret: {container['envFrom']}")
if {v["name"]: v for v in pod["volumes"]}["data"]["persistentVolumeClaim"]["claimName"] != "my-data":
    fail("the existing claim")
if [p["name"] for p in container["ports"]] != ["http", "dashboard"]:
    fail(f"the dashboard's port: {container['ports']}")
service = full[("Service", "demo-talaria")]
if [p["port"] for p in service["spec"]["ports"]] != [8642, 9119]:
    fail(f"the service's ports: {service['spec']['ports']}")

# Values the schema refuses.
for bad in (
    {"replicas": 3},
    {"persistence": {"size": 5}},
    {"gateway": {"port": 70000}},
    {"model": {"baseUrl": "ftp://x"}},
):
    try:
        chart.render(bad, name="demo", namespace="ai", is_install=True)
    except helm_python.HelmError as error:
        if "schema" not in str(error):
            fail(f"{bad}: refused for another reason: {error}")
        continue
    fail(f"{bad}: the schema let it through")

print("check_chart: lint clean, 2 renders valid, 4 bad values refused")
