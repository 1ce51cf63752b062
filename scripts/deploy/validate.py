#!/usr/bin/env python3
"""Offline checks of roar's deployment files, run by scripts/check-deploy.sh.

  validate.py k8s RENDERED.yaml   every object of `kubectl kustomize k8s/` against the
                                  Kubernetes JSON schemas (strict: unknown keys fail; the
                                  kubernetes-validate package ships them) or, for KEDA's
                                  ScaledObject, our schema beside this file; then the
                                  references between objects (autoscaler and PDB targets,
                                  consumer groups, GPU scheduling) that no schema can see.
  validate.py monitoring          every roar_* series the alert rules and the Grafana
                                  dashboard use is a metric common/src/metrics.rs declares.
"""

import json
import pathlib
import re
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
K8S_VERSION = "1.31.0"


def fail(errors):
    for e in errors:
        print(f"error: {e}", file=sys.stderr)
    sys.exit(1)


def pod_labels(deploy):
    return deploy["spec"]["template"]["metadata"].get("labels", {})


def selects(selector, labels):
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def check_schemas(docs):
    import jsonschema
    import kubernetes_validate

    keda = json.loads((ROOT / "scripts/deploy/keda-scaledobject.schema.json").read_text())
    errors = []
    for d in docs:
        name = f"{d.get('kind')}/{d.get('metadata', {}).get('name')}"
        try:
            if d.get("apiVersion", "").startswith("keda.sh/"):
                if d["kind"] != "ScaledObject":
                    errors.append(f"{name}: no schema for this KEDA kind")
                    continue
                for e in jsonschema.Draft202012Validator(keda).iter_errors(d):
                    where = "/".join(str(p) for p in e.path)
                    errors.append(f"{name}: {where}: {e.message}")
            else:
                kubernetes_validate.validate(d, K8S_VERSION, strict=True)
        except kubernetes_validate.SchemaNotFoundError as e:
            errors.append(f"{name}: {e}")
        except (kubernetes_validate.ValidationError, jsonschema.ValidationError) as e:
            where = "/".join(str(p) for p in getattr(e, "path", []))
            errors.append(f"{name}: {where}: {getattr(e, 'message', e)}")
    return errors


def roar_group(deploy):
    """The consumer group (as a pattern) and topic of a processor Deployment (`roar processor
    <role>`). The probe joins `roar-probe`; a model worker joins one group per (variation,
    version) it serves, `roar-<model>-<variation>@<version>` (tests/e2e/deploy_config.rs checks
    the exact name against the catalogue, which this script cannot read)."""
    args = deploy["spec"]["template"]["spec"]["containers"][0].get("args", [])
    if len(args) != 2 or args[0] != "processor":
        return None
    role = args[1]
    if role == "probe":
        return re.escape("roar-probe"), "roar.files.v1"
    return rf"roar-{re.escape(role)}-[^@]+@.+", f"roar.jobs.{role}.v1"


def check_references(docs):
    errors = []
    deploys = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    scaled = {}
    for d in docs:
        name = f"{d['kind']}/{d['metadata']['name']}"
        if d["kind"] == "ScaledObject":
            target = deploys.get(d["spec"]["scaleTargetRef"]["name"])
            if target is None:
                errors.append(f"{name}: scales no Deployment of this render")
                continue
            scaled[target["metadata"]["name"]] = name
            want = roar_group(target)
            for t in d["spec"]["triggers"]:
                if t["type"] == "kafka" and want is not None:
                    got = (t["metadata"]["consumerGroup"], t["metadata"]["topic"])
                    if not (re.fullmatch(want[0], got[0]) and got[1] == want[1]):
                        errors.append(f"{name}: watches {got}, the worker consumes {want}")
        elif d["kind"] == "HorizontalPodAutoscaler":
            ref = d["spec"]["scaleTargetRef"]
            if ref["kind"] != "Deployment" or ref["name"] not in deploys:
                errors.append(f"{name}: scales no Deployment of this render")
            elif ref["name"] in scaled:
                errors.append(f"{name}: {ref['name']} is also scaled by {scaled[ref['name']]}")
        elif d["kind"] == "PodDisruptionBudget":
            if not any(selects(d["spec"]["selector"], pod_labels(x)) for x in deploys.values()):
                errors.append(f"{name}: selects no pod of this render")
    for dname, d in deploys.items():
        spec = d["spec"]["template"]["spec"]
        gpu = any(
            "nvidia.com/gpu" in c.get("resources", {}).get("limits", {})
            for c in spec["containers"]
        )
        tolerates = any(t.get("key") == "nvidia.com/gpu" for t in spec.get("tolerations", []))
        if gpu and not (tolerates and spec.get("nodeSelector")):
            errors.append(f"Deployment/{dname}: asks for a GPU without a node selector and toleration")
        if roar_group(d) and dname not in scaled:
            errors.append(f"Deployment/{dname}: a consumer without a ScaledObject")
        if not any(selects(p["spec"]["selector"], pod_labels(d))
                   for p in docs if p["kind"] == "PodDisruptionBudget"):
            errors.append(f"Deployment/{dname}: no PodDisruptionBudget")
    return errors


def check_k8s(path):
    docs = [d for d in yaml.safe_load_all(pathlib.Path(path).read_text()) if d]
    if len(docs) < 10:
        fail([f"{path}: only {len(docs)} objects rendered"])
    errors = check_schemas(docs) + check_references(docs)
    if errors:
        fail(errors)
    print(f"{len(docs)} objects valid against Kubernetes {K8S_VERSION} (strict) and KEDA's ScaledObject")


def check_monitoring():
    src = (ROOT / "common/src/metrics.rs").read_text()
    declared = set(re.findall(r'^pub const \w+: &str = "(roar_\w+)";', src, re.M))
    if len(declared) < 10:
        fail([f"common/src/metrics.rs: found only {sorted(declared)}"])
    used = {}
    for f in ["monitoring/alerts.yml", "monitoring/grafana/roar-pipeline.json"]:
        text = (ROOT / f).read_text()
        if f.endswith(".json"):
            json.loads(text)
        for name in re.findall(r"\broar_[a-z_]+", text):
            base = re.sub(r"_(bucket|sum|count)$", "", name)
            used.setdefault(base if base in declared else name, set()).add(f)
    errors = [f"{n} (in {', '.join(sorted(fs))}) is no metric roar exports"
              for n, fs in sorted(used.items()) if n not in declared]
    if errors:
        fail(errors)
    print(f"{len(used)} metric names used by the alerts and the dashboard, all declared")


if __name__ == "__main__":
    if sys.argv[1:2] == ["k8s"] and len(sys.argv) == 3:
        check_k8s(sys.argv[2])
    elif sys.argv[1:] == ["monitoring"]:
        check_monitoring()
    else:
        sys.exit(__doc__)
