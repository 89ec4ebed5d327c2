"""What a FHIR server says it supports (its CapabilityStatement at `/metadata`), read once.

Real servers differ: Epic-like ones have no MedicationStatement, some cannot do `batch`, some
ignore or reject search parameters. The client asks this object instead of assuming.
A server whose statement lists no search parameters for a type is taken to support the
common ones (many do not list them); an unknown server is treated the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from connector.fhir.auth import token_url_from_capabilities

MEDICATION_HISTORY_FALLBACK = ("MedicationRequest", "MedicationAdministration")


@dataclass(frozen=True)
class Capabilities:
    """The parts of a CapabilityStatement the connector acts on."""

    fhir_version: str | None = None
    software: str | None = None
    # resource type -> its search parameter names (empty set: the server did not list them)
    resources: dict[str, frozenset[str]] = field(default_factory=dict)
    # resource type -> its searchInclude values ("*" or "Type:param[:target]")
    includes: dict[str, frozenset[str]] = field(default_factory=dict)
    batch: bool = False
    transaction: bool = False
    # operation names (without "$") at system level and per resource type
    system_operations: frozenset[str] = frozenset()
    type_operations: dict[str, frozenset[str]] = field(default_factory=dict)
    security_services: tuple[str, ...] = ()
    token_url: str | None = None
    known: bool = True  # False: no usable CapabilityStatement, so everything is assumed

    @classmethod
    def unknown(cls) -> Capabilities:
        """For a server whose /metadata cannot be read: assume the common features, no batch."""
        return cls(known=False)

    @classmethod
    def from_statement(cls, statement: dict[str, Any]) -> Capabilities:
        resources: dict[str, frozenset[str]] = {}
        includes: dict[str, frozenset[str]] = {}
        type_ops: dict[str, frozenset[str]] = {}
        system_ops: set[str] = set()
        interactions: set[str] = set()
        services: list[str] = []
        for rest in _dicts(statement.get("rest")):
            if rest.get("mode", "server") != "server":
                continue
            interactions |= {i.get("code") for i in _dicts(rest.get("interaction")) if isinstance(i.get("code"), str)}
            system_ops |= {_op_name(o) for o in _dicts(rest.get("operation")) if _op_name(o)}
            security = rest.get("security") if isinstance(rest.get("security"), dict) else {}
            for service in _dicts(security.get("service")):
                services += [c.get("code") for c in _dicts(service.get("coding")) if isinstance(c.get("code"), str)]
            for res in _dicts(rest.get("resource")):
                rtype = res.get("type")
                if not isinstance(rtype, str):
                    continue
                resources[rtype] = frozenset(p.get("name") for p in _dicts(res.get("searchParam"))
                                             if isinstance(p.get("name"), str))
                includes[rtype] = frozenset(i for i in res.get("searchInclude") or [] if isinstance(i, str))
                type_ops[rtype] = frozenset(_op_name(o) for o in _dicts(res.get("operation")) if _op_name(o))
        software = statement.get("software") if isinstance(statement.get("software"), dict) else {}
        name = " ".join(str(software[k]) for k in ("name", "version") if software.get(k)) or None
        return cls(
            fhir_version=statement.get("fhirVersion") if isinstance(statement.get("fhirVersion"), str) else None,
            software=name,
            resources=resources,
            includes=includes,
            batch="batch" in interactions,
            transaction="transaction" in interactions,
            system_operations=frozenset(system_ops),
            type_operations=type_ops,
            security_services=tuple(services),
            token_url=token_url_from_capabilities(statement),
        )

    def supports_type(self, rtype: str) -> bool:
        return not self.known or not self.resources or rtype in self.resources

    def supports_param(self, rtype: str, param: str) -> bool:
        """Whether `rtype?param=` is worth sending; unlisted parameters of a listed type are not."""
        if not self.supports_type(rtype):
            return False
        listed = self.resources.get(rtype)
        return not listed or param in listed or param in ("_id", "_count", "_lastUpdated")

    def supports_include(self, rtype: str, spec: str) -> bool:
        """`_include=spec` on `rtype`: only when the server lists it (or `*`)."""
        listed = self.includes.get(rtype, frozenset())
        return spec in listed or "*" in listed

    def medication_types(self, wanted: frozenset[str] | set[str]) -> list[str]:
        """The medication resource types to search for `wanted` ones, on this server.

        Without MedicationStatement (Epic-like servers) the history comes from
        MedicationRequest and MedicationAdministration instead.
        """
        types = [t for t in ("MedicationStatement", *MEDICATION_HISTORY_FALLBACK) if t in wanted]
        if "MedicationStatement" in types and not self.supports_type("MedicationStatement"):
            types = [t for t in types if t != "MedicationStatement"]
            types += [t for t in MEDICATION_HISTORY_FALLBACK if t not in types]
        return [t for t in types if self.supports_type(t)]

    @property
    def bulk_export(self) -> list[str]:
        """Levels at which `$export` is offered: "system", "Patient", "Group"."""
        levels = ["system"] if "export" in self.system_operations else []
        levels += [t for t in ("Patient", "Group") if "export" in self.type_operations.get(t, frozenset())]
        return levels


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _op_name(operation: dict[str, Any]) -> str | None:
    name = operation.get("name")
    return name.lstrip("$") if isinstance(name, str) and name else None
