"""Draft a trial mapping from its registry record: every bullet becomes computable criteria
or a `manual` one, each saying how it was derived and how sure the drafter is.

Flow: record -> bullets (inclusion/exclusion, as the text says) -> per bullet: labs,
performance status, age, pregnancy/breastfeeding, brain metastases, conditions, medications ->
criteria (dicts in the mapping file's shape) -> a document with `status: draft`. The
document is validated by the same loader as a hand-written mapping before it is written.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any

from connector.drafting import conditions as condition_table
from connector.drafting.context import find as find_context
from connector.drafting.demographics import allowed_sexes, structured_age, text_age
from connector.drafting.labs import LabGroup, LabThreshold, extract_labs
from connector.drafting.medications import ALLERGY_CUE, THERAPY_CUE, drug_mentions
from connector.drafting.performance import ECOG, KARNOFSKY, LANSKY, correspondence_note, extract_performance
from connector.drafting.quantities import ULN, find_bounds
from connector.drafting.rules import (CREATININE_CLEARANCE, ECOG_ANSWERS, ECOG_CODES, KARNOFSKY_CODES,
                                      PREGNANCY_RULE, PREGNANCY_WINDOW)
from connector.drafting.text import ascii_share, clean
from connector.drafting.windows import global_lab_window, window_days
from connector.mapping.hashing import criteria_hash
from connector.registry.eligibility import split_criteria

HIGH, MEDIUM, LOW = "high", "medium", "low"
DEFAULT_LAB_WINDOW = 28
DEFAULT_PERFORMANCE_WINDOW = 90
LONG_BULLET = 160  # a bullet longer than this likely says more than its computed parts

CONDITION_OF_ALTERNATIVE = {"liver": "liver_metastases", "hepatic": "liver_metastases", "gilbert": "gilbert_syndrome"}

CONTEXT_RULES = {
    "PREGNANCY": ["pregnant", "pregnancy", "pregnancy test", "non-pregnant"],
    "BREASTFEEDING": ["breastfeeding", "breast feeding", "breast-feeding", "lactating", "lactation", "nursing",
                      "non-lactating"],
    "BRAIN_METS": ["brain metastases", "brain metastasis", "cns metastases", "brain mets",
                   "central nervous system metastases", "cerebral metastases", "intracranial metastases"],
}
_PREGNANCY_NOT_A_STATE = re.compile(r"prevent(?:ion of)? pregnancy|pregnancy prevention|avoid(?:ing)? pregnancy|"
                                    r"side-effect of pregnancy|rule-out pregnancy|negative for pregnancy|"
                                    r"fathering|become pregnant during|(?:partner|partners)\b", re.IGNORECASE)
_NEGATIVE_TEST = re.compile(r"negative (?:serum |urine |blood )?(?:or urine )?(?:beta[- ]hcg |hcg )?pregnancy test|"
                            r"pregnancy test (?:must be |is |result )?negative", re.IGNORECASE)
_POSITIVE_TEST = re.compile(r"positive (?:serum |urine )?pregnancy test", re.IGNORECASE)
_BREASTFEEDING_DUTY = re.compile(r"discontinu|agree not to|must agree|should (?:stop|be)|refrain", re.IGNORECASE)
_BRAIN_REVIEW = re.compile(r"\b(?:unless|untreated|treated|stable|stabili[sz]ed|asymptomatic|symptomatic|active|"
                           r"uncontrolled|"
                           r"progressi|allowed|permitted|eligible|may participate|controlled|off steroids)\b",
                           re.IGNORECASE)
_CONDITION_REVIEW = re.compile(r"\b(?:uncontrolled|active|unstable|symptomatic|significant|severe|requiring|unless|"
                               r"except|within|current|recent|poorly controlled|known to be positive|class|grade|"
                               r"stage|nyha|such as|e\.g\.|\d)", re.IGNORECASE)
_GILBERT = re.compile(r"gilbert", re.IGNORECASE)
_ALLOWED = re.compile(r"\b(?:allowed|permitted|eligible|acceptable|are not excluded|is not excluded|may participate|"
                      r"may be enrolled|can be enrolled)\b", re.IGNORECASE)
_ENGLISH_WORDS = frozenset("""the of and or with to in for be must have has no not any patients patient subjects
subject participants participant who are is within prior than at least known history years age if by as from on an a
will may should can which that this these those after before during other such including except unless per all each
either both more less most normal greater eligible confirmed previous current treatment therapy disease""".split())


_OTHER_LANGUAGE_WORDS = frozenset("""der die das und mit nicht ist sind oder von bei für eine keine einer patienten
les et avec des du est sont pour une pas ou dans sur aux la le los las y con del son para por una sin pacientes
il gli con per non sono della degli nei pazienti os com não são pelo doentes het een niet zijn voor van""".split())


@dataclass
class Bullet:
    section: str  # inclusion | exclusion
    text: str  # verbatim
    clean: str


@dataclass
class Draft:
    """The drafted mapping document and what the drafter wants a person to know."""

    document: dict[str, Any]
    notes: list[str] = field(default_factory=list)


class _Ids:
    def __init__(self) -> None:
        self.used: set[str] = set()

    def new(self, base: str) -> str:
        slug = re.sub(r"[^a-z0-9]+", "_", base.lower()).strip("_")[:40] or "criterion"
        if not slug[0].isalpha():
            slug = f"c_{slug}"
        candidate, n = slug, 2
        while candidate in self.used:
            candidate, n = f"{slug}_{n}", n + 1
        self.used.add(candidate)
        return candidate


def _is_foreign(text: str) -> bool:
    """A bullet in a language the patterns were not written for: mostly non-Latin letters, or more
    function words of another European language than of English."""
    if ascii_share(text) < 0.7:
        return True
    words = re.findall(r"[^\W\d_]+", text.lower())
    english = sum(1 for w in words if w in _ENGLISH_WORDS)
    other = sum(1 for w in words if w in _OTHER_LANGUAGE_WORDS)
    return (other >= 2 and other > english) or (len(words) >= 12 and english == 0)


def protocol_of(record: dict[str, Any]) -> dict[str, Any]:
    """protocolSection of an API v2 record, or of a record as the registry store keeps it."""
    return record.get("protocolSection") or record.get("protocol_section") or {}


def draft_mapping(record: dict[str, Any]) -> Draft:
    """A draft mapping document for one registry record (never raises on odd text)."""
    protocol = protocol_of(record)
    ident = protocol.get("identificationModule") or {}
    trial = str(ident.get("nctId") or record.get("nct_id") or "")
    module = protocol.get("eligibilityModule")
    notes: list[str] = []
    text = module.get("eligibilityCriteria") if isinstance(module, dict) else None
    if not isinstance(module, dict):
        notes.append("the record has no eligibilityModule: nothing to draft from but this note")
        module = {}
    builder = _Builder(module, notes)
    if not isinstance(text, str) or not text.strip():
        notes.append("the record has no eligibility criteria text: only age and sex are drafted")
        builder.manual_only("(no eligibility criteria text in the registry record)", "inclusion",
                            "no criteria text to read", "read the protocol and add criteria by hand")
        text = text if isinstance(text, str) else ""
    else:
        split = split_criteria(text)
        bullets = [Bullet(section, item, clean(item))
                   for section, items in (("inclusion", split.inclusion), ("exclusion", split.exclusion))
                   for item in items]
        if not bullets:
            notes.append("no bullet could be read from the criteria text")
            builder.manual_only(text.strip()[:500], "inclusion", "unreadable criteria text", "read the text yourself")
        builder.lab_window = global_lab_window([b.clean for b in bullets])
        for bullet in bullets:
            builder.bullet(bullet)
    document: dict[str, Any] = {
        "trial": trial,
        "title": ident.get("briefTitle") or trial,
        "status": "draft",
        "criteria_hash": criteria_hash(text),
        "notes": "Drafted by `trial-connector mappings draft` from the registry text. Review every criterion "
                 "(`trial-connector mappings check`), then change `status: draft` to `status: reviewed`."
                 + ("" if not notes else " Drafter notes: " + "; ".join(notes) + "."),
        "criteria": builder.finish(),
    }
    return Draft(document, notes)


class _Builder:
    def __init__(self, module: dict[str, Any], notes: list[str]):
        self.module = module
        self.notes = notes
        self.ids = _Ids()
        self.criteria: list[dict[str, Any]] = []
        self.age: dict[str, Any] | None = None
        self.pregnancy: dict[str, Any] | None = None
        self.breastfeeding: dict[str, Any] | None = None
        self.lab_window: int | None = None
        self._demographics()

    # ---------------------------------------------------------------- structured fields
    def _demographics(self) -> None:
        age = structured_age(self.module)
        if age.min_years is not None or age.max_years is not None:
            self.age = self._add("age", "inclusion", self._age_text(), {"kind": "age", **_age_fields(age)},
                                 "registry minimumAge/maximumAge", HIGH, "; ".join(age.notes) or None)
        sexes = allowed_sexes(self.module)
        if sexes:
            self._add("sex", "inclusion", f"sex: {self.module.get('sex')}", {"kind": "sex", "allowed": sexes},
                      "registry eligibilityModule.sex", HIGH)

    def _age_text(self) -> list[str]:
        return [f"{k}: {self.module[k]}" for k in ("minimumAge", "maximumAge") if self.module.get(k)]

    # ---------------------------------------------------------------- one bullet
    def bullet(self, bullet: Bullet) -> None:
        before = len(self.criteria)
        try:
            computed = self._computed(bullet)
        except Exception as exc:  # noqa: BLE001 - one odd bullet must never sink the draft
            self.notes.append(f"a bullet could not be read ({exc.__class__.__name__}); it is left as manual")
            computed = False
        if not computed and _is_foreign(bullet.text):
            self.notes.append("a bullet is in a language the drafter does not read; it is left as manual")
            self._manual(bullet, "a language the drafter does not read", "read and encode this bullet by hand")
        elif not computed:
            self._manual(bullet, "no computable rule recognised", "decide whether a rule can be written")
        elif len(bullet.clean) > LONG_BULLET and len(self.criteria) > before:
            self._manual(bullet, "the bullet says more than its computed parts",
                         "check the parts of this bullet the computed criteria above do not cover",
                         base=f"{self.criteria[before]['id']}_rest")

    def _computed(self, bullet: Bullet) -> bool:
        found = False
        found |= self._labs(bullet)
        found |= self._gilbert_bullet(bullet)
        found |= self._performance(bullet)
        found |= self._age_bullet(bullet)
        findings = find_context(bullet.clean, CONTEXT_RULES)
        found |= self._reproductive(bullet, findings)
        found |= self._brain(bullet, findings)
        found |= self._conditions(bullet)
        found |= self._medications(bullet)
        return found

    # ---------------------------------------------------------------- labs
    def _labs(self, bullet: Bullet) -> bool:
        groups = extract_labs(bullet.clean)
        added = False
        for group in groups:
            rule, how, confidence, confirm = self._lab_rule(group, bullet)
            if rule is None:
                self.notes.append(f"{how}")
                continue
            name = group.options[0][0].analyte.key
            criterion = self._add(name, bullet.section, bullet.text, rule, how, confidence, confirm)
            if name == "bilirubin_total" and bullet.section == "inclusion" and _GILBERT.search(bullet.clean) \
                    and not any(t.condition for t in group.thresholds):
                self._defer_for_gilbert(criterion)
            added = True
        return added

    def _defer_for_gilbert(self, criterion: dict[str, Any]) -> None:
        """"unless Gilbert's syndrome" with no multiple of its own: a failed bilirubin goes to a person."""
        entry = condition_table.table()["gilbert_syndrome"]
        criterion["defer_if_not_met"] = {"kind": "condition", "codes": condition_table.code_sets(entry)}
        note = "with Gilbert's syndrome (E80.4) a failed bilirubin goes to review: the text states no limit for it"
        criterion["draft"]["confirm"] = "; ".join(filter(None, [criterion["draft"].get("confirm"), note]))

    def _gilbert_bullet(self, bullet: Bullet) -> bool:
        """A bullet of its own about Gilbert's ("If confirmed Gilbert's, eligible providing ...") qualifies
        the bilirubin criterion before it."""
        if bullet.section != "inclusion" or not _GILBERT.search(bullet.clean) or find_bounds(bullet.clean):
            return False
        bilirubin = next((c for c in reversed(self.criteria) if c["id"].startswith("bilirubin_total")
                          and c["type"] == "inclusion"), None)
        if bilirubin is None or bilirubin.get("kind") != "observation":
            return False
        bilirubin["text"] = [*_texts(bilirubin), bullet.text]
        self._defer_for_gilbert(bilirubin)
        return True

    def _lab_rule(self, group: LabGroup, bullet: Bullet) -> tuple[dict | None, str, str, str | None]:
        window = window_days(bullet.clean)
        confirm: list[str] = []
        confidence = HIGH
        if window is None:
            window = self.lab_window or DEFAULT_LAB_WINDOW
            confidence = MEDIUM
            confirm.append(f"window of {window} days " + ("stated once for all labs" if self.lab_window
                                                          else "not stated in the text (drafter default)"))
        options: list[dict] = []
        described: list[str] = []
        for option in group.options:
            rules = []
            for threshold in option:
                rule = _threshold_rule(threshold, window)
                if rule is None:
                    return None, (f"{threshold.analyte.label} {threshold.comparator} {threshold.value:g} "
                                  f"{threshold.unit}: no verified LOINC code, left as manual"), LOW, None
                if threshold.condition:
                    key = next((v for k, v in CONDITION_OF_ALTERNATIVE.items() if k in threshold.condition.lower()),
                               None)
                    if key is None:  # dropping the alternative would change who qualifies: leave it to a person
                        return None, (f"{_describe(threshold)}: an alternative under a condition the drafter "
                                      "cannot encode, left as manual"), LOW, None
                    entry = condition_table.table()[key]
                    rule = {"kind": "all_of", "rules": [
                        {"kind": "condition", "codes": condition_table.code_sets(entry)}, rule]}
                rules.append(rule)
                confirm.extend(threshold.notes)
                if threshold.inferred_comparator:
                    confidence = LOW
                if threshold.unit.endswith("{1.73_m2}") and threshold.analyte.derived:
                    confirm.append("per 1.73 m2: Cockcroft-Gault gives mL/min, so the engine cannot compare it; "
                                   "change the unit to mL/min if that is what the site uses")
                    confidence = LOW
                described.append(_describe(threshold))
            if rules:
                options.append(rules[0] if len(rules) == 1 else {"kind": "all_of", "rules": rules})
        if not options:
            return None, "a lab bullet gave no usable threshold", LOW, None
        rule = options[0] if len(options) == 1 else {"kind": "any_of", "rules": options}
        if len(options) > 1 and confidence == HIGH:
            confidence = MEDIUM
            confirm.append("alternatives joined with any_of: check that either suffices")
        how = "lab pattern: " + " OR ".join(described)
        return rule, how, confidence, "; ".join(confirm) or None

    # ---------------------------------------------------------------- performance status
    def _performance(self, bullet: Bullet) -> bool:
        bounds = extract_performance(bullet.clean)
        rules = []
        for bound in bounds:
            if bound.scale == ECOG:
                rules.append((bound, {"kind": "observation", "codes": ECOG_CODES, "comparator": bound.comparator,
                                      "threshold": {"value": bound.value}, "window_days": DEFAULT_PERFORMANCE_WINDOW,
                                      "answers": ECOG_ANSWERS}))
            elif bound.scale == KARNOFSKY:
                rules.append((bound, {"kind": "observation", "codes": KARNOFSKY_CODES, "comparator": bound.comparator,
                                      "threshold": {"value": bound.value}, "window_days": DEFAULT_PERFORMANCE_WINDOW}))
            elif bound.scale == LANSKY:
                self.notes.append("Lansky play-performance has no verified LOINC code: left for review")
        if not rules:
            return False
        notes = "; ".join(n for n in (correspondence_note(b) for b, _ in rules) if n)
        how = "performance pattern: " + " OR ".join(f"{b.scale} {b.comparator} {b.value}" for b, _ in rules)
        rule = rules[0][1] if len(rules) == 1 else {"kind": "any_of", "rules": [r for _, r in rules]}
        confirm = f"latest value within {DEFAULT_PERFORMANCE_WINDOW} days (drafter default)" + (
            f"; {notes}" if notes else "")
        if any(b.scale == LANSKY for b in bounds):
            confirm += "; a Lansky bound is stated too (children): not computed"
        self._add("performance_status" if len(rules) > 1 else rules[0][0].scale, bullet.section, bullet.text, rule,
                  how, HIGH if len(rules) == 1 else MEDIUM, confirm)
        return True

    # ---------------------------------------------------------------- age
    def _age_bullet(self, bullet: Bullet) -> bool:
        if bullet.section != "inclusion":
            return False
        bounds = text_age(bullet.clean)
        if bounds is None:
            return False
        if self.age is None:
            self.age = self._add("age", "inclusion", bullet.text, {"kind": "age", **_age_fields(bounds)},
                                 "age pattern in the text (the registry gives no age limits)", MEDIUM)
            return True
        self.age["text"] = [*_texts(self.age), bullet.text]
        stated = _age_fields(bounds)
        current = {k: self.age.get(k) for k in ("min_years", "max_years")}
        if any(stated.get(k) is not None and stated[k] != current[k] for k in stated):
            self.age["draft"]["confirm"] = (f"the text says {stated}, the registry fields {current}: "
                                            "the registry fields are used")
            self.age["draft"]["confidence"] = MEDIUM
        return True

    # ---------------------------------------------------------------- pregnancy, breastfeeding
    def _reproductive(self, bullet: Bullet, findings: list) -> bool:
        excluded_pregnancy = excluded_breastfeeding = False
        for f in findings:
            if f.label == "PREGNANCY":
                around = bullet.clean[max(0, f.start - 30):f.end + 30]
                if _PREGNANCY_NOT_A_STATE.search(around) and not _NEGATIVE_TEST.search(f.sentence):
                    continue
                if bullet.section == "exclusion" and not f.negated:
                    excluded_pregnancy = True
                elif bullet.section == "inclusion" and (f.negated or f.text.lower().startswith("non")):
                    excluded_pregnancy = True
                if _NEGATIVE_TEST.search(f.sentence) or _POSITIVE_TEST.search(f.sentence):
                    excluded_pregnancy = True
            elif f.label == "BREASTFEEDING":
                if _BREASTFEEDING_DUTY.search(f.sentence):
                    continue
                if (bullet.section == "exclusion" and not f.negated) or \
                        (bullet.section == "inclusion" and (f.negated or f.text.lower().startswith("non"))):
                    excluded_breastfeeding = True
        if excluded_pregnancy:
            if self.pregnancy is None:
                self.pregnancy = self._add(
                    "not_pregnant", "exclusion", bullet.text, PREGNANCY_RULE,
                    "pregnancy mention (ConText: not negated in an exclusion, negated or a negative test in an "
                    "inclusion); gated by sex as in the reviewed seed mapping", HIGH,
                    f"pregnancy status or a positive hCG within {PREGNANCY_WINDOW} days; no record -> not pregnant")
            else:
                self.pregnancy["text"] = [*_texts(self.pregnancy), bullet.text]
        if excluded_breastfeeding:
            if self.breastfeeding is None:
                self.breastfeeding = self._add(
                    "not_breastfeeding", "exclusion", bullet.text, {"kind": "manual"},
                    "breastfeeding mention (ConText)", MEDIUM,
                    "breastfeeding is rarely coded in FHIR: a person confirms it")
            else:
                self.breastfeeding["text"] = [*_texts(self.breastfeeding), bullet.text]
        return excluded_pregnancy or excluded_breastfeeding

    # ---------------------------------------------------------------- brain metastases
    def _brain(self, bullet: Bullet, findings: list) -> bool:
        mentions = [f for f in findings if f.label == "BRAIN_METS"]
        if not mentions:
            return False
        first = mentions[0]
        excluding = (bullet.section == "exclusion" and not first.negated) or \
            (bullet.section == "inclusion" and first.negated)
        if not excluding or (bullet.section == "exclusion" and _ALLOWED.search(first.sentence)
                             and not re.search(r"\b(?:untreated|active|symptomatic|known)\b", first.sentence, re.I)):
            return False
        review = bool(_BRAIN_REVIEW.search(bullet.clean))
        entry = condition_table.table()["brain_metastases"]
        rule = {"kind": "condition", "codes": condition_table.code_sets(entry)}
        criterion = self._add("no_brain_metastases", "exclusion", bullet.text, rule,
                              "brain-metastasis mention (ConText) -> ICD-10-CM C79.31 with descendants",
                              HIGH if not review else MEDIUM,
                              "treated/stable metastases are allowed by the text, so a recorded one goes to review"
                              if review else None)
        if review:
            criterion["review_if_found"] = True
        return True

    # ---------------------------------------------------------------- other conditions
    def _conditions(self, bullet: Bullet) -> bool:
        added = False
        skip = {"brain_metastases", "liver_metastases", "gilbert_syndrome", "leptomeningeal_disease"}
        findings = condition_table.find_conditions(bullet.clean)
        for entry, match in findings:
            if entry.key in skip:
                continue
            skip.add(entry.key)  # one criterion per condition and bullet
            sentence = _sentence_around(bullet.clean, match.start())
            negated = bool(re.search(r"\b(?:no|not|without|absence of|negative for)\b[^.;]{0,40}$",
                                     sentence[:match.start() - _sentence_start(bullet.clean, match.start())],
                                     re.IGNORECASE))
            if bullet.section == "exclusion" and (negated or _ALLOWED.search(sentence)):
                continue
            if bullet.section == "inclusion" and not negated:
                continue
            review = bool(_CONDITION_REVIEW.search(sentence))
            criterion = self._add(f"no_{entry.key}", "exclusion", bullet.text,
                                  {"kind": "condition", "codes": condition_table.code_sets(entry)},
                                  f"condition name '{match.group(0)}' -> ICD-10-CM {', '.join(entry.codes[:3])}"
                                  f"{' ...' if len(entry.codes) > 3 else ''} (simple-icd-10-cm, with descendants)",
                                  MEDIUM if review else HIGH,
                                  "the text qualifies the condition (active/uncontrolled/...), which codes do not "
                                  "say: a recorded one goes to review" if review else None)
            if review:
                criterion["review_if_found"] = True
            added = True
        return added

    # ---------------------------------------------------------------- medications
    def _medications(self, bullet: Bullet) -> bool:
        names = [name for name, at in drug_mentions(bullet.clean)
                 if _exposure_stated(bullet.clean, at)]
        names = list(dict.fromkeys(names))
        if not names:
            return False
        negated_inclusion = bullet.section == "inclusion" and re.search(
            r"^\s*(?:no|not|must not|without)\b|\bno (?:prior|previous|concurrent)\b", bullet.clean, re.IGNORECASE)
        if bullet.section == "inclusion" and not negated_inclusion:
            return False
        if _ALLOWED.search(bullet.clean) and not negated_inclusion:
            return False
        window = window_days(bullet.clean)
        confirm = []
        if window:
            confirm.append(f"the text limits this to the last {window} days; the medication rule matches any time, "
                           "so a match goes to review")
        criterion = self._add(f"no_{names[0]}", "exclusion", bullet.text, {"kind": "medication", "names": names},
                              "drug names by USAN/INN stem or common name (no RxNorm code verified)",
                              LOW if confirm else MEDIUM, "; ".join(confirm) or "matches by name only")
        if confirm:
            criterion["review_if_found"] = True
        return True

    # ---------------------------------------------------------------- helpers
    def _manual(self, bullet: Bullet, why: str, confirm: str, base: str | None = None) -> None:
        words = re.findall(r"[a-z0-9]+", bullet.clean.lower())[:5]
        self._add(base or "_".join(words) or "criterion", bullet.section, bullet.text, {"kind": "manual"},
                  f"manual: {why}", LOW, confirm)

    def manual_only(self, text: str, section: str, why: str, confirm: str) -> None:
        self._add("criteria_text", section, text, {"kind": "manual"}, f"manual: {why}", LOW, confirm)

    def _add(self, base: str, type_: str, text: str | list[str], rule: dict[str, Any], how: str, confidence: str,
             confirm: str | None = None) -> dict[str, Any]:
        # deep copies: a shared code list would be written as a YAML alias (&id001) a reviewer cannot edit in place
        criterion: dict[str, Any] = {"id": self.ids.new(base), "type": type_, "text": text, **copy.deepcopy(rule),
                                     "draft": {"how": how, "confidence": confidence}}
        if confirm:
            criterion["draft"]["confirm"] = confirm
        self.criteria.append(criterion)
        return criterion

    def finish(self) -> list[dict[str, Any]]:
        return self.criteria


def _texts(criterion: dict[str, Any]) -> list[str]:
    text = criterion["text"]
    return list(text) if isinstance(text, list) else [text]


def _age_fields(bounds: Any) -> dict[str, int]:
    return {k: v for k, v in (("min_years", bounds.min_years), ("max_years", bounds.max_years)) if v is not None}


def _threshold_rule(threshold: LabThreshold, window: int) -> dict[str, Any] | None:
    analyte = threshold.analyte
    value = int(threshold.value) if float(threshold.value).is_integer() else threshold.value
    limit: dict[str, Any] = {"value": value}
    if threshold.unit == ULN:
        limit["relative_to"] = "uln"
    elif threshold.unit != "1":
        limit["unit"] = threshold.unit
    if analyte.derived == "creatinine_clearance" and threshold.unit != ULN:
        return {"kind": "derived", "derive": "creatinine_clearance", "comparator": threshold.comparator,
                "threshold": limit, "window_days": window, **CREATININE_CLEARANCE}
    if not analyte.loinc:
        return None
    rule: dict[str, Any] = {"kind": "observation", "codes": [{"system": "loinc", "codes": list(analyte.loinc)}],
                            "comparator": threshold.comparator, "threshold": limit, "window_days": window}
    if analyte.molar_mass:
        rule["molar_mass"] = analyte.molar_mass
    return rule


def _describe(threshold: LabThreshold) -> str:
    unit = "x ULN" if threshold.unit == ULN else threshold.unit
    where = f" with {threshold.condition}" if threshold.condition else ""
    return f"{threshold.analyte.label} {threshold.comparator} {threshold.value:g} {unit}{where}"


_CONDITIONAL = re.compile(r"\b(?:if|should|would|may|unless|allowed|permitted|except|exception|not considered)\b",
                          re.IGNORECASE)
_EXAMPLES = re.compile(r"\((?:e\.g\.|i\.e\.|eg|ie|such as|for example)[^()]*$", re.IGNORECASE)


def _exposure_stated(text: str, at: int) -> bool:
    """A therapy cue shortly before the drug name in the same sentence, and no conditional wording."""
    before = text[_sentence_start(text, at):at][-70:]
    sentence = _sentence_around(text, at)
    return (bool(THERAPY_CUE.search(before)) and not _CONDITIONAL.search(sentence)
            and not ALLERGY_CUE.search(sentence) and not _EXAMPLES.search(text[:at]))


_BOUNDARIES = (". ", "; ", "\n")


def _sentence_start(text: str, at: int) -> int:
    cut = max(text.rfind(b, 0, at) for b in _BOUNDARIES)
    return cut + 1 if cut >= 0 else 0


def _sentence_around(text: str, at: int) -> str:
    start = _sentence_start(text, at)
    end = min([i for i in (text.find(b, at) for b in _BOUNDARIES) if i >= 0] or [len(text)])
    return text[start:end]
