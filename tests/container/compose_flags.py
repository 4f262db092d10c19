"""The hardening of compose.yaml's `talaria` service as `docker run` flags.

Run by tests/integration/container.rs, which starts the image with these
flags on a real engine (the Compose plugin is not installed where the tests
run, so the file's settings are applied through `docker run`). Fails when
the file does not parse or a setting the test relies on is missing.

usage: compose_flags.py COMPOSE_FILE
"""

import json
import sys

import yaml

with open(sys.argv[1]) as file:
    compose = yaml.safe_load(file)
service = compose["services"]["talaria"]
flags = []
if service.get("read_only") is not True:
    sys.exit("compose.yaml: services.talaria.read_only must be true")
flags.append("--read-only")
for mount in service.get("tmpfs", []):
    flags += ["--tmpfs", mount]
for capability in service.get("cap_drop", []):
    flags += ["--cap-drop", capability]
for capability in service.get("cap_add", []):
    flags += ["--cap-add", capability]
for option in service.get("security_opt", []):
    flags += ["--security-opt", option]
if "pids_limit" in service:
    flags += ["--pids-limit", str(service["pids_limit"])]
if "mem_limit" in service:
    flags += ["--memory", str(service["mem_limit"])]
print(json.dumps({"flags": flags, "ports": service.get("ports", []),
                  "restart": service.get("restart"),
                  "healthcheck": service.get("healthcheck", {}).get("test")}))
