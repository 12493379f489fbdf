#!/usr/bin/env python3
"""Validates the ServiceMonitor objects of the YAML files given against
servicemonitor.schema.json (beside this script), offline; every other object goes to
kubernetes-validate --strict, which knows the built-in kinds but no CRD. Exits 1 on any
problem, printing each with its file, object and field path."""
import json
import pathlib
import subprocess
import sys
import tempfile

import jsonschema
import yaml

schema = json.loads((pathlib.Path(__file__).parent / "servicemonitor.schema.json").read_text())
validator = jsonschema.Draft7Validator(schema)
failed = False
monitors = 0
for name in sys.argv[1:]:
    builtin = []
    for doc in yaml.safe_load_all(pathlib.Path(name).read_text()):
        if doc is None:
            continue
        if not isinstance(doc, dict):
            print(f"{name}: a document that is not a Kubernetes object: {doc!r:.60}")
            failed = True
            continue
        if doc.get("kind") != "ServiceMonitor":
            builtin.append(doc)
            continue
        monitors += 1
        where = f"{name}: ServiceMonitor/{(doc.get('metadata') or {}).get('name')}"
        errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.path))
        for error in errors:
            path = ".".join(str(p) for p in error.absolute_path) or "(top)"
            print(f"{where}: {path}: {error.message}")
        failed |= bool(errors)
    if builtin:
        with tempfile.NamedTemporaryFile("w", suffix=".yaml") as rest:
            yaml.safe_dump_all(builtin, rest)
            rest.flush()
            done = subprocess.run(["kubernetes-validate", "--strict", "--quiet", rest.name])
            if done.returncode != 0:
                print(f"{name}: its built-in objects fail kubernetes-validate (above)")
                failed = True
if monitors == 0:
    print(f"no ServiceMonitor in {', '.join(sys.argv[1:])}: is its kind spelled ServiceMonitor?")
    failed = True
sys.exit(1 if failed else 0)
