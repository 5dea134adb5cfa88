"""The CRD's schema and the policy model describe the same fields (the CRD is the one
source users see; the model is what authgate enforces)."""

from pathlib import Path
from typing import get_args, get_origin

import yaml
from pydantic import BaseModel

from authgate.policy.model import ASYMMETRIC_ALGORITHMS, PolicySpec

CRD = Path(__file__).parents[3] / "crds" / "oauthpolicies.authgate.dev.yaml"


def crd_version() -> dict:
    document = yaml.safe_load(CRD.read_text())
    [version] = document["spec"]["versions"]
    return version


def model_of(annotation):
    """The pydantic model inside list[X], X | None, dict[str, X]... or None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for argument in get_args(annotation):
        found = model_of(argument)
        if found is not None:
            return found
    return None


def compare(model: type[BaseModel], schema: dict, where: str, problems: list[str]) -> None:
    if schema.get("type") == "array":
        schema = schema["items"]
    properties = schema.get("properties", {})
    fields = {(info.alias or name): info for name, info in model.model_fields.items()}
    for missing in sorted(set(fields) - set(properties)):
        problems.append(f"{where}.{missing}: in the model, not in the CRD")
    for extra in sorted(set(properties) - set(fields)):
        problems.append(f"{where}.{extra}: in the CRD, not in the model")
    for name, info in fields.items():
        nested = model_of(info.annotation)
        if nested is not None and name in properties and get_origin(info.annotation) is not dict:
            compare(nested, properties[name], f"{where}.{name}", problems)
        if name in properties and info.is_required() != (name in schema.get("required", [])):
            problems.append(f"{where}.{name}: required differs")


def test_crd_schema_has_exactly_the_model_fields():
    spec_schema = crd_version()["schema"]["openAPIV3Schema"]["properties"]["spec"]
    problems: list[str] = []
    compare(PolicySpec, spec_schema, "spec", problems)
    assert problems == []


def test_crd_is_structural_without_preserve_unknown_fields():
    assert "x-kubernetes-preserve-unknown-fields" not in CRD.read_text()


def test_crd_names_and_columns():
    document = yaml.safe_load(CRD.read_text())
    names = document["spec"]["names"]
    assert (names["kind"], names["shortNames"], names["categories"]) == ("OAuthPolicy", ["oap"], ["authgate"])
    version = crd_version()
    assert version["name"] == "v1alpha1" and version["subresources"] == {"status": {}}
    assert [c["name"] for c in version["additionalPrinterColumns"]] == ["Resource", "Ready", "Synced", "Age"]


def test_crd_algorithms_are_the_asymmetric_ones():
    issuers = crd_version()["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["issuers"]
    assert tuple(issuers["items"]["properties"]["algorithms"]["items"]["enum"]) == ASYMMETRIC_ALGORITHMS
