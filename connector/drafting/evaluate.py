"""Measure drafts against gold annotations: precision and recall per category.

Gold (tests/fixtures/drafting/gold.yaml) is written by hand from the text. A drafted lab
threshold matches a gold one when analyte, comparator and value agree, the value compared after
converting the draft's unit to the gold's (x ULN only matches x ULN). Exclusion thresholds are
compared as written in the exclusion. Performance status matches on scale, comparator and value;
age and sex on the bounds; pregnancy, breastfeeding and brain metastases on presence (and
review vs exclude for brain metastases).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterator

from connector.drafting.labs import dictionary
from connector.units import UnitError, convert

CATEGORIES = ("age", "sex", "performance", "labs", "pregnancy", "breastfeeding", "brain_metastases")


@dataclass
class Score:
    true_positive: int = 0
    false_positive: int = 0
    false_negative: int = 0
    misses: list[str] = field(default_factory=list)
    extras: list[str] = field(default_factory=list)

    @property
    def precision(self) -> float:
        found = self.true_positive + self.false_positive
        return self.true_positive / found if found else 1.0

    @property
    def recall(self) -> float:
        expected = self.true_positive + self.false_negative
        return self.true_positive / expected if expected else 1.0


def _rules(rule: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield rule
    for child in rule.get("rules") or []:
        yield from _rules(child)


def _analyte_of_codes(codes: list[dict[str, Any]]) -> str | None:
    wanted = {str(c) for cs in codes for c in cs.get("codes", [])}
    for key, analyte in dictionary()[0].items():
        if wanted & set(analyte.loinc):
            return key
    return None


def drafted_labs(document: dict[str, Any]) -> list[dict[str, Any]]:
    """Lab thresholds of a drafted (or hand-written) mapping, as gold-shaped dicts."""
    found = []
    for criterion in document.get("criteria", []):
        for rule in _rules(criterion):
            if rule.get("kind") == "derived":
                analyte = "creatinine_clearance"
            elif rule.get("kind") == "observation":
                analyte = _analyte_of_codes(rule.get("codes") or [])
            else:
                continue
            if analyte is None:
                continue  # performance status and codes outside the lab dictionary
            threshold = rule["threshold"]
            unit = "xULN" if threshold.get("relative_to") == "uln" else threshold.get("unit", "1")
            found.append({"analyte": analyte, "comparator": rule["comparator"], "value": threshold["value"],
                          "unit": unit, "type": criterion.get("type", "inclusion")})
    return found


def _lab_key(lab: dict[str, Any]) -> str:
    return f"{lab.get('type', 'inclusion')[:3]} {lab['analyte']} {lab['comparator']} {lab['value']:g} {lab['unit']}"


def _labs_match(draft: dict[str, Any], gold: dict[str, Any]) -> bool:
    if (draft["analyte"], draft["comparator"], draft.get("type", "inclusion")) != \
            (gold["analyte"], gold["comparator"], gold.get("type", "inclusion")):
        return False
    if (draft["unit"] == "xULN") != (gold["unit"] == "xULN"):
        return False
    if draft["unit"] == "xULN":
        return abs(float(draft["value"]) - float(gold["value"])) < 1e-9
    molar_mass = dictionary()[0][gold["analyte"]].molar_mass if gold["analyte"] in dictionary()[0] else None
    try:
        value = convert(float(draft["value"]), draft["unit"], gold["unit"], molar_mass)
    except UnitError:
        return False
    return abs(value - float(gold["value"])) <= 1e-6 * max(1.0, abs(float(gold["value"])))


def _match_lists(drafted: list[Any], gold: list[Any], same, key, score: Score, trial: str) -> None:
    remaining = list(drafted)
    for expected in gold:
        hit = next((d for d in remaining if same(d, expected)), None)
        if hit is None:
            score.false_negative += 1
            score.misses.append(f"{trial}: {key(expected)}")
        else:
            remaining.remove(hit)
            score.true_positive += 1
    score.false_positive += len(remaining)
    score.extras.extend(f"{trial}: {key(d)}" for d in remaining)


def drafted_performance(document: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for criterion in document.get("criteria", []):
        for rule in _rules(criterion):
            if rule.get("kind") != "observation":
                continue
            codes = {str(c) for cs in rule.get("codes") or [] for c in cs.get("codes", [])}
            scale = "ecog" if "89247-1" in codes else "karnofsky" if "89243-0" in codes else None
            if scale:
                found.append({"scale": scale, "comparator": rule["comparator"], "value": rule["threshold"]["value"]})
    return found


def drafted_summary(document: dict[str, Any]) -> dict[str, Any]:
    """What the draft says per category, in the gold file's shape."""
    criteria = document.get("criteria", [])
    age = next((c for c in criteria if c.get("kind") == "age"), {})
    sex = next((c for c in criteria if c.get("kind") == "sex"), None)
    brain = next((c for c in criteria if c["id"].startswith("no_brain_metastases")), None)
    return {
        "age": {"min_years": age.get("min_years"), "max_years": age.get("max_years")},
        "sex": "all" if sex is None else sex["allowed"][0] if len(sex["allowed"]) == 1 else "all",
        "performance": drafted_performance(document),
        "labs": drafted_labs(document),
        "pregnancy": any(c["id"].startswith("not_pregnant") for c in criteria),
        "breastfeeding": any(c["id"].startswith("not_breastfeeding") for c in criteria),
        "brain_metastases": None if brain is None else "review" if brain.get("review_if_found") else "exclude",
    }


def score_trial(trial: str, gold: dict[str, Any], document: dict[str, Any], scores: dict[str, Score]) -> None:
    summary = drafted_summary(document)
    for category in ("age", "sex", "pregnancy", "breastfeeding", "brain_metastases"):
        expected, got = gold.get(category), summary[category]
        if category == "age":
            expected = {k: (expected or {}).get(k) for k in ("min_years", "max_years")}
        score = scores[category]
        present = category in ("age", "sex") or bool(expected)
        if expected == got:
            if present:
                score.true_positive += 1
        else:
            if present:
                score.false_negative += 1
                score.misses.append(f"{trial}: expected {expected}, drafted {got}")
            if got:
                score.false_positive += 1
                if not present:
                    score.extras.append(f"{trial}: drafted {got}")
    _match_lists(summary["performance"], gold.get("performance") or [],
                 lambda d, g: (d["scale"], d["comparator"], float(d["value"])) ==
                 (g["scale"], g["comparator"], float(g["value"])),
                 lambda p: f"{p['scale']} {p['comparator']} {p['value']}", scores["performance"], trial)
    _match_lists(summary["labs"], gold.get("labs") or [], _labs_match, _lab_key, scores["labs"], trial)


def evaluate(gold: dict[str, dict[str, Any]], documents: dict[str, dict[str, Any]]) -> dict[str, Score]:
    """Scores per category over every gold trial that has a drafted document."""
    scores = {c: Score() for c in CATEGORIES}
    for trial, expected in gold.items():
        if trial in documents:
            score_trial(trial, expected, documents[trial], scores)
    return scores


def bullet_coverage(record: dict[str, Any], document: dict[str, Any]) -> Counter:
    """How many bullets of the record's text the draft's criteria account for (by `text`)."""
    from connector.drafting.draft import protocol_of
    from connector.registry.eligibility import split_criteria

    module = protocol_of(record).get("eligibilityModule") or {}
    split = split_criteria(module.get("eligibilityCriteria"))
    texts = set()
    for criterion in document.get("criteria", []):
        text = criterion.get("text")
        texts.update(text if isinstance(text, list) else [text])
    items = split.inclusion + split.exclusion
    return Counter(total=len(items), accounted=sum(1 for item in items if item in texts))


def render(scores: dict[str, Score], trials: int, bullets: Counter, verbose: bool = False) -> str:
    lines = [f"{trials} trial(s); bullets: {bullets['total']}, accounted for: {bullets['accounted']}", "",
             f"{'category':<18} {'precision':>9} {'recall':>7} {'tp':>4} {'fp':>4} {'fn':>4}"]
    for category, score in scores.items():
        lines.append(f"{category:<18} {score.precision:>9.3f} {score.recall:>7.3f} {score.true_positive:>4} "
                     f"{score.false_positive:>4} {score.false_negative:>4}")
    if verbose:
        for category, score in scores.items():
            lines += [f"  {category} missed: {m}" for m in score.misses]
            lines += [f"  {category} extra: {m}" for m in score.extras]
    return "\n".join(lines)
