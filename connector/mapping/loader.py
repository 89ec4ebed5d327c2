"""Load a trial mapping: YAML (safe_load, duplicate keys refused) -> JSON Schema -> model.

Every error is one line naming the file, the criterion id and the JSON path, e.g.
`mappings/x.yaml: criterion 'hemoglobin': $.criteria[7].threshold.unit: 'g/dq' is not a known
UCUM unit`, because whoever edits a mapping must be able to fix it without reading code.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from connector.codes import CodeSet, normalize_text
from connector.errors import MappingError, short
from connector.mapping import cache as validated_cache
from connector.mapping.model import (
    Administrations,
    AgeRule,
    AllOf,
    AnswerValue,
    AnyOf,
    Arm,
    ArmOption,
    CodedObservationRule,
    ConditionRule,
    CreatinineClearanceRule,
    Criterion,
    DoseTarget,
    ManualRule,
    Mapping,
    MedicationRule,
    Not,
    ObservationRule,
    OptionRule,
    Rule,
    SexRule,
    SiteCountryRule,
    Threshold,
)
from connector.units import UnitError, require_known_unit

if TYPE_CHECKING:
    import jsonschema

REPO_ROOT = Path(__file__).resolve().parents[2]
SCHEMA_PATH = REPO_ROOT / "schemas" / "mapping.schema.json"
MAX_YAML_VALUES = 100_000  # the seed mapping has about 900
MAX_YAML_DEPTH = 100  # the seed mapping nests 8 deep


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (PyYAML silently keeps the last one) and nesting
    deeper than MAX_YAML_DEPTH (PyYAML's scanner slows down quadratically, its composer recurses)."""

    def fetch_more_tokens(self) -> None:
        super().fetch_more_tokens()
        if self.flow_level + len(self.indents) > MAX_YAML_DEPTH:
            raise yaml.YAMLError(f"nested deeper than {MAX_YAML_DEPTH} levels; refused")


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def find_mapping(trial: str, mapping_path: str | Path | None = None) -> Path:
    """`--mapping PATH`, else `mappings/<NCT>.yaml` in the working directory, else in the repo."""
    if mapping_path is not None:
        path = Path(mapping_path)
        if not path.is_file():
            raise MappingError(f"mapping file {path} not found")
        return path
    for base in (Path.cwd(), REPO_ROOT):
        candidate = base / "mappings" / f"{trial}.yaml"
        if candidate.is_file():
            return candidate
    raise MappingError(f"no mapping for {trial}: expected mappings/{trial}.yaml (or give --mapping PATH)")


def load_trial_mapping(trial: str, mapping_path: str | Path | None = None) -> tuple[Path, Mapping]:
    """The trial's mapping file and its content, checked to map that very trial."""
    path = find_mapping(trial, mapping_path)
    mapping = load_mapping(path)
    if mapping.trial != trial:
        raise MappingError(f"{display_name(path)}: maps {mapping.trial}, not {trial}")
    return path, mapping


@lru_cache(maxsize=1)
def _validator() -> jsonschema.Draft202012Validator:
    import jsonschema  # ~50 ms; not needed when the mapping's bytes were validated before

    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return jsonschema.Draft202012Validator(schema)


def json_path(parts: Any) -> str:
    path = "$"
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def display_name(path: Path) -> str:
    """The path relative to the working directory when it is below it (shorter messages)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def load_mapping(path: str | Path) -> Mapping:
    path = Path(path)
    name = display_name(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise MappingError(f"{name}: cannot read: {exc.strerror or exc}") from None
    known = validated_cache.recall(text, SCHEMA_PATH)
    if known is not None:
        return build_mapping(known, name, path, validated=True)
    try:
        document = parse_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f"line {mark.line + 1} column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise MappingError(f"{name}: invalid YAML: {where}{short(problem, 300)}") from None
    mapping = build_mapping(document, name, path)
    validated_cache.remember(text, SCHEMA_PATH, document)
    return mapping


def parse_yaml(text: str) -> Any:
    """YAML -> Python with SafeLoader semantics, duplicate keys refused, and aliases bounded:
    a document whose aliases would expand beyond MAX_YAML_VALUES values (a "billion laughs"
    bomb) is refused before anything walks the expansion."""
    loader = _UniqueKeyLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        expanded_size(node)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def expanded_size(node: yaml.Node) -> int:
    """How many values `node` stands for once every alias is expanded; YAMLError past the bound."""
    sizes: dict[int, int] = {}
    in_progress: set[int] = set()

    def size(current: yaml.Node) -> int:
        key = id(current)
        if key in sizes:
            return sizes[key]
        if key in in_progress:
            raise yaml.YAMLError("a YAML alias refers to itself")
        in_progress.add(key)
        total = 1
        if isinstance(current, yaml.SequenceNode):
            total += sum(size(child) for child in current.value)
        elif isinstance(current, yaml.MappingNode):
            total += sum(size(k) + size(v) for k, v in current.value)
        in_progress.discard(key)
        if total > MAX_YAML_VALUES:
            raise yaml.YAMLError(f"aliases expand to more than {MAX_YAML_VALUES} values; refused")
        sizes[key] = total
        return total

    return size(node)


def build_mapping(document: Any, name: str, path: Path | None = None, validated: bool = False) -> Mapping:
    """Validate a parsed mapping document (unless `validated` before) and build the model;
    errors name file, criterion, path."""
    errors = [] if validated else list(_validator().iter_errors(document))
    if errors:
        error = _most_specific(errors)
        raise MappingError(f"{name}: {_owner(document, list(error.absolute_path))}"
                           f"{json_path(error.absolute_path)}: {_message(error)}")
    builder = _Builder(document, name)
    criteria = tuple(builder.criterion(c, i) for i, c in enumerate(document["criteria"]))
    seen: dict[str, int] = {}
    for i, criterion in enumerate(criteria):
        if criterion.id in seen:
            raise MappingError(f"{name}: criterion {criterion.id!r}: $.criteria[{i}].id: duplicate id "
                               f"(also $.criteria[{seen[criterion.id]}])")
        seen[criterion.id] = i
    arms = tuple(builder.arm(a, i) for i, a in enumerate(document.get("arms") or []))
    return Mapping(document["trial"], document["criteria_hash"], criteria, arms, document.get("title"), path)


def _most_specific(errors: list[jsonschema.ValidationError]) -> jsonschema.ValidationError:
    """The error that says what to fix: the deepest one, ignoring the follow-on
    `unevaluatedProperties` errors a failed kind-specific branch leaves behind."""
    direct = [e for e in errors if e.validator != "unevaluatedProperties"] or errors
    return min(direct, key=lambda e: (-len(e.absolute_path), [str(p) for p in e.absolute_path], e.message))


def _owner(document: Any, parts: list[Any]) -> str:
    """`criterion 'x': ` or `arm 'y': ` for an error path inside one, else ''."""
    if len(parts) >= 2 and parts[0] in ("criteria", "arms") and isinstance(parts[1], int):
        try:
            item = document[parts[0]][parts[1]]
        except (KeyError, IndexError, TypeError):
            return ""
        if isinstance(item, dict):
            key = "id" if parts[0] == "criteria" else "label"
            if isinstance(item.get(key), str):
                return f"{'criterion' if parts[0] == 'criteria' else 'arm'} {item[key]!r}: "
    return ""


def _message(error: jsonschema.ValidationError) -> str:
    if error.validator == "enum" and list(error.absolute_path)[-1:] == ["kind"]:
        return f"unknown kind {short(repr(error.instance), 80)} (known: {', '.join(error.validator_value)})"
    return short(error.message, 300)


class _Builder:
    """Turns a schema-valid document into model objects; checks what a schema cannot (units)."""

    def __init__(self, document: dict[str, Any], name: str):
        self.document = document
        self.name = name
        self.owner = ""

    def fail(self, path: str, problem: str) -> MappingError:
        return MappingError(f"{self.name}: {self.owner}{path}: {problem}")

    def criterion(self, raw: dict[str, Any], index: int) -> Criterion:
        path = f"$.criteria[{index}]"
        self.owner = f"criterion {raw['id']!r}: "
        texts = raw["text"] if isinstance(raw["text"], list) else [raw["text"]]
        if raw.get("review_if_found") and raw["type"] != "exclusion":
            raise self.fail(f"{path}.review_if_found", "only exclusion criteria can defer a match to review")
        defer = raw.get("defer_if_not_met")
        return Criterion(
            id=raw["id"],
            type=raw["type"],
            texts=tuple(texts),
            rule=self.rule(raw, path),
            review_if_found=bool(raw.get("review_if_found", False)),
            defer_if_not_met=self.rule(defer, f"{path}.defer_if_not_met") if defer is not None else None,
        )

    def arm(self, raw: dict[str, Any], index: int) -> Arm:
        self.owner = f"arm {raw['label']!r}: "
        options = []
        for j, option in enumerate(raw["options"]):
            base = f"$.arms[{index}].options[{j}]"
            options.append(ArmOption(
                name=option["name"],
                requires=tuple(OptionRule(r["why"], self.rule(r["rule"], f"{base}.requires[{k}].rule"))
                               for k, r in enumerate(option.get("requires") or [])),
                unless=tuple(OptionRule(r["why"], self.rule(r["rule"], f"{base}.unless[{k}].rule"))
                             for k, r in enumerate(option.get("unless") or [])),
            ))
        return Arm(raw["label"], tuple(options))

    def rule(self, raw: dict[str, Any], path: str) -> Rule:
        kind = raw["kind"]
        if kind == "age":
            return AgeRule(raw.get("min_years"), raw.get("max_years"))
        if kind == "sex":
            return SexRule(frozenset(raw["allowed"]))
        if kind == "site_country":
            return SiteCountryRule(frozenset(raw["countries"]))
        if kind == "condition":
            return ConditionRule(self.code_sets(raw["codes"]), self.code_sets(raw.get("exclude_codes")),
                                 raw.get("clinical_status", "any"), self.code_sets(raw.get("body_sites")))
        if kind == "observation":
            return ObservationRule(
                codes=self.code_sets(raw["codes"]),
                comparator=raw["comparator"],
                threshold=self.threshold(raw["threshold"], f"{path}.threshold"),
                window_days=raw["window_days"],
                molar_mass=raw.get("molar_mass"),
                answers=tuple(AnswerValue(self.code_sets(a["codes"]), float(a["value"]))
                              for a in raw.get("answers") or []),
            )
        if kind == "coded_observation":
            return CodedObservationRule(
                codes=self.code_sets(raw["codes"]),
                answers=self.code_sets(raw["answers"]),
                window_days=raw["window_days"],
                texts=frozenset(normalize_text(t) for t in raw.get("answer_texts") or []),
                when_missing=raw.get("when_missing", "unknown"),
            )
        if kind == "medication":
            return MedicationRule(self.code_sets(raw.get("codes")),
                                  tuple(normalize_text(n) for n in raw.get("names") or []),
                                  self.administrations(raw.get("administrations"), f"{path}.administrations"))
        if kind == "derived":
            threshold = self.threshold(raw["threshold"], f"{path}.threshold")
            if threshold.relative_to_uln or threshold.unit is None:
                raise self.fail(f"{path}.threshold", "creatinine clearance needs a unit such as mL/min")
            return CreatinineClearanceRule(
                comparator=raw["comparator"], threshold=threshold, window_days=raw["window_days"],
                measured_codes=self.code_sets(raw["measured_codes"]),
                creatinine_codes=self.code_sets(raw["creatinine_codes"]),
                weight_codes=self.code_sets(raw["weight_codes"]),
                weight_window_days=raw["weight_window_days"],
                creatinine_molar_mass=float(raw["creatinine_molar_mass"]),
            )
        if kind in ("all_of", "any_of"):
            rules = tuple(self.rule(r, f"{path}.rules[{i}]") for i, r in enumerate(raw["rules"]))
            return AllOf(rules) if kind == "all_of" else AnyOf(rules)
        if kind == "not":
            return Not(self.rule(raw["rule"], f"{path}.rule"))
        return ManualRule()

    def threshold(self, raw: dict[str, Any], path: str) -> Threshold:
        relative = raw.get("relative_to") == "uln"
        unit = raw.get("unit")
        if relative and unit is not None:
            raise self.fail(f"{path}.unit", "a threshold relative to the ULN takes no unit")
        if unit is not None:
            self.check_unit(unit, f"{path}.unit")
        return Threshold(float(raw["value"]), unit, relative)

    def administrations(self, raw: dict[str, Any] | None, path: str) -> Administrations | None:
        if raw is None:
            return None
        dose = raw.get("cumulative_dose")
        target = None
        if dose is not None:
            self.check_unit(dose["unit"], f"{path}.cumulative_dose.unit")
            target = DoseTarget(tuple(float(v) for v in dose["values"]), dose["unit"], float(dose.get("tolerance", 0)))
        return Administrations(raw["period_days"], frozenset(raw["counts"]), raw.get("max_total"), target)

    def check_unit(self, unit: str, path: str) -> None:
        try:
            require_known_unit(unit)
        except UnitError:
            raise self.fail(path, f"{unit!r} is not a known UCUM unit") from None

    @staticmethod
    def code_sets(raw: list[dict[str, Any]] | None) -> tuple[CodeSet, ...]:
        return tuple(CodeSet.of(cs["system"], [str(c) for c in cs["codes"]], cs.get("match") == "prefix")
                     for cs in raw or [])
