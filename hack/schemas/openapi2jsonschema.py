#!/usr/bin/env python3
"""Offline, strict JSON schemas for kubeconform (run by hack/schemas/build.sh).

kubeconform looks a resource up as `<dir>/{{ .ResourceKind }}{{ .KindSuffix }}.json`:
the lowercased kind, then `-<first label of the group>-<version>` (`-<version>` for the
core group). Examples: `service-v1.json`, `httproute-gateway-v1.json`,
`securitypolicy-gateway-v1alpha1.json`, `authorizationpolicy-security-v1.json`.

Sources (no network: files from Go module zips):

- built-in kinds: the Kubernetes OpenAPI v3 documents in k8s.io/kubernetes's
  api/openapi-spec/v3 (one file per group-version);
- custom resources: CustomResourceDefinition YAML (every served version);
- Istio's MeshConfig: mesh/v1alpha1/*.proto of istio.io/api, as a synthetic kind
  `MeshConfig` in `mesh.istio.io/v1alpha1` (`meshconfig-mesh-v1alpha1.json`), so the
  `mesh` document of the `istio` ConfigMap can be checked by kubeconform too.

Every schema is self-contained (the definitions it reaches sit in its own `definitions`,
recursion included) and strict: an object that lists `properties` refuses any other key
(`additionalProperties: false`), unless the source says `x-kubernetes-preserve-unknown-fields`
or sets `additionalProperties` itself. Custom resources get the real ObjectMeta schema for
`metadata` (a CRD only says `type: object`), so a typo there fails too. `nullable: true`
becomes a `null` type. CEL rules (`x-kubernetes-validations`) cannot be evaluated here and
are dropped, with descriptions and defaults (size).

Usage:
  openapi2jsonschema.py --out DIR [--k8s-openapi V3_DIR] [--crd FILE ...]
                        [--meta DIR] [--istio-mesh-proto-dir DIR]
`--meta DIR` reads ObjectMeta from `DIR/_meta/objectmeta.json` (written by a run with
`--k8s-openapi`), for converting CRDs later without the Kubernetes module at hand.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
DRAFT4 = "http://json-schema.org/draft-04/schema#"
# Kinds every group lists; no manifest is ever one of them.
SKIPPED_KINDS = frozenset({"DeleteOptions", "WatchEvent"})
SCHEMA_MAPS = ("properties", "patternProperties", "definitions")
JUNCTORS = ("allOf", "anyOf", "oneOf")
DROPPED = ("description", "default", "example", "externalDocs", "x-kubernetes-validations")


class Conflict(Exception):
    pass


def file_name(kind: str, group: str, version: str) -> str:
    """kubeconform's `{{ .ResourceKind }}{{ .KindSuffix }}.json`."""
    suffix = f"-{group.split('.')[0].lower()}-{version.lower()}" if group else f"-{version.lower()}"
    return f"{kind.lower()}{suffix}.json"


def convert(node: Any, *, structural: bool = True, ref_prefix: str = "#/components/schemas/") -> Any:
    """One schema node made strict and plain draft-4 JSON Schema.

    `structural` is false inside allOf/anyOf/oneOf/not: those subschemas only add
    constraints to the node around them, so they must not refuse its other keys."""
    if isinstance(node, list):
        return [convert(item, structural=structural, ref_prefix=ref_prefix) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in DROPPED or (key.startswith("x-") and key != "x-kubernetes-preserve-unknown-fields"):
            continue
        if key == "$ref" and isinstance(value, str) and value.startswith(ref_prefix):
            out[key] = "#/definitions/" + value[len(ref_prefix) :]
        elif key in SCHEMA_MAPS and isinstance(value, dict):
            out[key] = {name: convert(sub, ref_prefix=ref_prefix) for name, sub in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, (dict, list)):
            out[key] = convert(value, ref_prefix=ref_prefix)
        elif key in JUNCTORS and isinstance(value, list):
            out[key] = [convert(sub, structural=False, ref_prefix=ref_prefix) for sub in value]
        elif key == "not" and isinstance(value, dict):
            out[key] = convert(value, structural=False, ref_prefix=ref_prefix)
        elif key == "format" and value == "int-or-string":
            continue  # the v3 documents say it with oneOf already
        else:
            out[key] = value
    preserve = out.pop("x-kubernetes-preserve-unknown-fields", False)
    if node.get("x-kubernetes-int-or-string") and not any(j in out for j in JUNCTORS) and "type" not in out:
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if node.get("x-kubernetes-embedded-resource") and "properties" in out:
        for name in ("apiVersion", "kind"):
            out["properties"].setdefault(name, {"type": "string"})
        out["properties"].setdefault("metadata", {"type": "object"})
    if node.get("nullable") is True:
        out.pop("nullable", None)
        if isinstance(out.get("type"), str):
            out["type"] = [out["type"], "null"]
        if isinstance(out.get("enum"), list) and None not in out["enum"]:
            out["enum"] = [*out["enum"], None]
    else:
        out.pop("nullable", None)
    if structural and "properties" in out and "additionalProperties" not in out and not preserve:
        out["additionalProperties"] = False
    return out


def references(node: Any) -> set[str]:
    found: set[str] = set()
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            ref = item.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/definitions/"):
                found.add(ref[len("#/definitions/") :])
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def closure(roots: set[str], definitions: dict[str, Any]) -> dict[str, Any]:
    """The definitions reachable from `roots` (which must all exist)."""
    picked: dict[str, Any] = {}
    todo = sorted(roots)
    while todo:
        name = todo.pop()
        if name in picked:
            continue
        if name not in definitions:
            raise KeyError(f"unresolved $ref #/definitions/{name}")
        picked[name] = definitions[name]
        todo.extend(references(definitions[name]) - picked.keys())
    return dict(sorted(picked.items()))


class Writer:
    """Writes schema files, refusing two different resources under one file name."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.owners: dict[str, tuple[str, str, str]] = {}
        out.mkdir(parents=True, exist_ok=True)

    def write(self, kind: str, group: str, version: str, schema: dict[str, Any]) -> None:
        name = file_name(kind, group, version)
        owner = (kind, group, version)
        if name in self.owners and self.owners[name] != owner:
            raise Conflict(
                f"{name}: both {self.owners[name]} and {owner} map to it; kubeconform could not tell them apart"
            )
        self.owners[name] = owner
        document = {"$schema": DRAFT4, **schema}
        (self.out / name).write_text(json.dumps(document, separators=(",", ":"), sort_keys=True) + "\n")


def group_version_of(path: Path) -> tuple[str, str] | None:
    """`api__v1_openapi.json` → ("", "v1"); `apis__apps__v1_openapi.json` → ("apps", "v1")."""
    parts = path.name.removesuffix("_openapi.json").split("__")
    if parts == ["api", "v1"]:
        return "", "v1"
    if len(parts) == 3 and parts[0] == "apis":
        return parts[1], parts[2]
    return None


def builtin(v3_dir: Path, writer: Writer) -> dict[str, Any]:
    """Schemas for every built-in kind; returns ObjectMeta with its definitions."""
    meta: dict[str, Any] | None = None
    count = 0
    for path in sorted(v3_dir.glob("*_openapi.json")):
        group_version = group_version_of(path)
        if group_version is None:
            continue
        group, version = group_version
        raw = json.loads(path.read_text()).get("components", {}).get("schemas", {})
        definitions = {name: convert(schema) for name, schema in raw.items()}
        if meta is None and OBJECT_META in definitions:
            meta = {"root": OBJECT_META, "definitions": closure({OBJECT_META}, definitions)}
        for name, schema in raw.items():
            for gvk in schema.get("x-kubernetes-group-version-kind", []):
                if (gvk.get("group", ""), gvk.get("version")) != (group, version) or gvk["kind"] in SKIPPED_KINDS:
                    continue
                root = definitions[name]
                reachable = closure(references(root), definitions)
                writer.write(gvk["kind"], group, version, {**root, "definitions": reachable})
                count += 1
    if meta is None:
        raise SystemExit(f"{v3_dir}: no {OBJECT_META} found")
    print(f"built-in: {count} schemas from {v3_dir}", file=sys.stderr)
    return meta


def crd_documents(path: Path) -> list[dict[str, Any]]:
    found = []
    for document in yaml.safe_load_all(path.read_text()):
        if not isinstance(document, dict):
            continue
        items = document.get("items") if document.get("kind") == "List" else [document]
        found.extend(d for d in items or [] if isinstance(d, dict) and d.get("kind") == "CustomResourceDefinition")
    return found


def crds(paths: list[Path], meta: dict[str, Any], writer: Writer) -> None:
    for path in paths:
        count = 0
        for crd in crd_documents(path):
            spec = crd["spec"]
            for version in spec.get("versions", []):
                if not version.get("served", True):
                    continue
                raw = (version.get("schema") or {}).get("openAPIV3Schema")
                if raw is None:
                    raise SystemExit(f"{path}: {spec['names']['kind']} {version['name']} has no openAPIV3Schema")
                schema = convert(raw)
                properties = schema.setdefault("properties", {})
                for name in ("apiVersion", "kind"):  # Istio's CRD schemas leave them out
                    properties.setdefault(name, {"type": "string"})
                own_meta = {k: v for k, v in properties.get("metadata", {}).items() if k != "type"}
                meta_ref = {"$ref": f"#/definitions/{meta['root']}"}
                properties["metadata"] = {"allOf": [meta_ref, own_meta]} if own_meta else meta_ref
                schema.setdefault("additionalProperties", False)
                schema["definitions"] = meta["definitions"]
                writer.write(spec["names"]["kind"], spec["group"], version["name"], schema)
                count += 1
        if count == 0:
            raise SystemExit(f"{path}: no CustomResourceDefinition with a schema")
        print(f"custom resources: {count} schemas from {path}", file=sys.stderr)


# --- Istio MeshConfig from its .proto files ------------------------------------------------

PROTO_TOKEN = re.compile(r'\s+|//[^\n]*|/\*.*?\*/|"(?:\\.|[^"\\])*"|[A-Za-z_][\w.]*|-?\d[\w.]*|.', re.S)
SCALARS: dict[str, dict[str, Any]] = {
    "string": {"type": "string"},
    "bytes": {"type": "string"},
    "bool": {"type": "boolean"},
    "double": {"type": "number"},
    "float": {"type": "number"},
    **{t: {"type": "integer"} for t in ("int32", "uint32", "sint32", "fixed32", "sfixed32")},
    # protojson writes 64-bit integers as strings and reads both forms
    **{t: {"type": ["integer", "string"]} for t in ("int64", "uint64", "sint64", "fixed64", "sfixed64")},
    "google.protobuf.Duration": {"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]{1,9})?s$"},
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.BoolValue": {"type": "boolean"},
    "google.protobuf.StringValue": {"type": "string"},
    "google.protobuf.BytesValue": {"type": "string"},
    "google.protobuf.DoubleValue": {"type": "number"},
    "google.protobuf.FloatValue": {"type": "number"},
    "google.protobuf.Int32Value": {"type": "integer"},
    "google.protobuf.UInt32Value": {"type": "integer"},
    "google.protobuf.Int64Value": {"type": ["integer", "string"]},
    "google.protobuf.UInt64Value": {"type": ["integer", "string"]},
    "google.protobuf.Struct": {"type": "object"},
    "google.protobuf.Value": {},
    "google.protobuf.ListValue": {"type": "array"},
    "google.protobuf.Any": {"type": "object"},
    "google.protobuf.Empty": {"type": "object"},
}


def lower_camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


class Proto:
    """Just enough of a proto3 parser for message, enum, oneof, map and repeated fields."""

    def __init__(self, package: str) -> None:
        self.package = package
        self.messages: dict[str, list[tuple[str, str, str]]] = {}  # name → [(field, label, type)]
        self.enums: dict[str, list[str]] = {}

    def parse(self, text: str) -> None:
        tokens = [t for t in PROTO_TOKEN.findall(text) if t.strip() and not t.startswith(("//", "/*"))]
        position = 0
        package = ""

        def skip_statement() -> None:
            nonlocal position
            depth = 0
            while position < len(tokens):
                word = tokens[position]
                position += 1
                if word in "[({":
                    depth += 1
                elif word in "])}":
                    depth -= 1
                elif word == ";" and depth == 0:
                    return

        def block(scope: str, kind: str) -> None:
            nonlocal position
            fields: list[tuple[str, str, str]] = []
            values: list[str] = []
            while tokens[position] != "}":
                word = tokens[position]
                if word in ("message", "enum"):
                    name = tokens[position + 1]
                    position += 3  # keyword, name, {
                    block(f"{scope}.{name}", word)
                elif word == "oneof":
                    position += 3
                    while tokens[position] != "}":
                        if tokens[position] == "option":
                            skip_statement()
                            continue
                        fields.append(field())
                    position += 1
                elif word == ";":
                    position += 1
                elif word in ("option", "reserved", "extensions"):
                    skip_statement()
                elif kind == "enum":
                    values.append(word)
                    skip_statement()
                else:
                    fields.append(field())
            position += 1
            if kind == "enum":
                self.enums[scope] = values
            else:
                self.messages[scope] = fields

        def field() -> tuple[str, str, str]:
            nonlocal position
            label = ""
            if tokens[position] in ("repeated", "optional"):
                label = tokens[position]
                position += 1
            if tokens[position] == "map":
                key, value = tokens[position + 2], tokens[position + 4]
                type_ = f"map<{key},{value}>"
                position += 6
            else:
                type_ = tokens[position]
                position += 1
            name = tokens[position]
            skip_statement()
            return name, label, type_

        while position < len(tokens):
            word = tokens[position]
            if word == "package":
                package = tokens[position + 1]
                skip_statement()
            elif word in ("message", "enum"):
                name = tokens[position + 1]
                position += 3
                block(name, word)
            else:
                skip_statement()
        if package != self.package:
            raise SystemExit(f"proto package {package!r}, expected {self.package!r}")

    def resolve(self, type_: str, scope: str) -> tuple[str, str] | None:
        """("message"|"enum", full name) of a type used in `scope`, None when foreign."""
        if type_.startswith(self.package + "."):
            type_ = type_[len(self.package) + 1 :]
        parts = scope.split(".")
        for depth in range(len(parts), -1, -1):
            candidate = ".".join([*parts[:depth], type_])
            if candidate in self.messages:
                return "message", candidate
            if candidate in self.enums:
                return "enum", candidate
        return None

    def schema(self, root: str) -> dict[str, Any]:
        definitions: dict[str, Any] = {}

        def type_schema(type_: str, scope: str) -> dict[str, Any]:
            if type_ in SCALARS:
                return dict(SCALARS[type_])
            if type_.startswith("map<"):
                _key_type, value_type = type_[4:-1].split(",")
                return {"type": "object", "additionalProperties": type_schema(value_type, scope)}
            found = self.resolve(type_, scope)
            if found is None:
                return {}  # another package (e.g. istio.networking.*): not checked
            what, name = found
            if what == "enum":
                return {"anyOf": [{"type": "string", "enum": self.enums[name]}, {"type": "integer"}]}
            if name not in definitions:
                definitions[name] = {}
                definitions[name] = message(name)
            return {"$ref": f"#/definitions/{name}"}

        def message(name: str) -> dict[str, Any]:
            properties: dict[str, Any] = {}
            for field_name, label, type_ in self.messages[name]:
                value = type_schema(type_, name)
                if label == "repeated":
                    value = {"type": "array", "items": value}
                properties[lower_camel(field_name)] = value
                properties[field_name] = value  # protojson accepts the proto name too
            return {"type": "object", "properties": properties, "additionalProperties": False}

        top = message(root)
        return {**top, "definitions": definitions}


def meshconfig(proto_dir: Path, writer: Writer) -> None:
    proto = Proto("istio.mesh.v1alpha1")
    for path in sorted(proto_dir.glob("*.proto")):
        proto.parse(path.read_text())
    if "MeshConfig" not in proto.messages:
        raise SystemExit(f"{proto_dir}: no MeshConfig message")
    schema = proto.schema("MeshConfig")
    schema["properties"]["apiVersion"] = {"enum": ["mesh.istio.io/v1alpha1"]}
    schema["properties"]["kind"] = {"enum": ["MeshConfig"]}
    writer.write("MeshConfig", "mesh.istio.io", "v1alpha1", schema)
    print(f"MeshConfig: {len(schema['definitions'])} messages from {proto_dir}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--k8s-openapi", type=Path, help="k8s.io/kubernetes api/openapi-spec/v3")
    parser.add_argument("--crd", type=Path, action="append", default=[], help="CRD YAML file (repeatable)")
    parser.add_argument("--meta", type=Path, help="a schema dir built earlier: take ObjectMeta from it")
    parser.add_argument("--istio-mesh-proto-dir", type=Path, help="istio.io/api mesh/v1alpha1")
    args = parser.parse_args(argv)
    writer = Writer(args.out)
    meta: dict[str, Any] | None = None
    try:
        if args.k8s_openapi:
            meta = builtin(args.k8s_openapi, writer)
            (args.out / "_meta").mkdir(exist_ok=True)
            (args.out / "_meta" / "objectmeta.json").write_text(json.dumps(meta, sort_keys=True))
        elif args.meta:
            meta = json.loads((args.meta / "_meta" / "objectmeta.json").read_text())
        if args.crd:
            if meta is None:
                parser.error("--crd needs --k8s-openapi or --meta (for ObjectMeta)")
            crds(args.crd, meta, writer)
        if args.istio_mesh_proto_dir:
            meshconfig(args.istio_mesh_proto_dir, writer)
    except (Conflict, KeyError) as error:
        print(f"openapi2jsonschema: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
