#!/usr/bin/env python3
"""Kubernetes' OpenAPI (v2) spec to the JSON schemas kubeconform reads.

usage: k8s-schemas.py SWAGGER_JSON OUT_DIR

SWAGGER_JSON is api/openapi-spec/swagger.json of the k8s.io/kubernetes Go
module (the Go module proxy serves it; GitHub, kubeconform's default schema
source, is not reachable from CI). OUT_DIR gets `_definitions.json` with every
definition, and one `<kind>-<group>-<version>.json` per resource kind in the
file names kubeconform's `{{ .ResourceKind }}{{ .KindSuffix }}` template asks
for, each referring to its definition. Objects refuse properties they do not
declare (kubeconform's -strict), and the types that accept either a number or
a string in manifests (IntOrString, Quantity) accept both.
"""

import json
import os
import sys

EITHER = {
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString": [{"type": "string"}, {"type": "integer"}],
    "io.k8s.apimachinery.pkg.api.resource.Quantity": [{"type": "string"}, {"type": "number"}],
}


def strict(node):
    """Closes every object schema that lists its properties."""
    if isinstance(node, dict):
        if "properties" in node and "additionalProperties" not in node \
                and not node.get("x-kubernetes-preserve-unknown-fields"):
            node["additionalProperties"] = False
        for value in node.values():
            strict(value)
    elif isinstance(node, list):
        for value in node:
            strict(value)


def main():
    swagger, out = sys.argv[1], sys.argv[2]
    with open(swagger, encoding="utf-8") as f:
        definitions = json.load(f)["definitions"]
    for name, either in EITHER.items():
        description = definitions.get(name, {}).get("description", "")
        definitions[name] = {"description": description, "oneOf": either}
    strict(definitions)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "_definitions.json"), "w", encoding="utf-8") as f:
        json.dump({"definitions": definitions}, f)
    kinds = 0
    for name, schema in definitions.items():
        for gvk in schema.get("x-kubernetes-group-version-kind", []):
            group = gvk["group"].split(".")[0]
            suffix = f"-{group}-{gvk['version']}" if group else f"-{gvk['version']}"
            path = os.path.join(out, f"{gvk['kind'].lower()}{suffix}.json")
            with open(path, "w", encoding="utf-8") as f:
                json.dump({"$ref": f"_definitions.json#/definitions/{name}"}, f)
            kinds += 1
    print(f"{kinds} kinds from {swagger} in {out}")


if __name__ == "__main__":
    main()
