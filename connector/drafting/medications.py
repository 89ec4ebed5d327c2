"""Drugs named in the text, by name: the USAN/INN stems of drug names ("-mab", "-tinib",
"-platin", ...) plus a short list of common non-stem names. No RxNorm code is added here: a
medication criterion matches by name (the engine folds case and punctuation) until a reviewer
adds verified codes.
"""

from __future__ import annotations

import re

_STEMS = ("mab", "tinib", "ciclib", "parib", "rasib", "rafenib", "degib", "lisib", "zomib", "olimus", "platin", "taxel",
          "rubicin", "mustine", "fosfamide", "citabine", "trexate", "tecan", "vir", "xaban", "gatran", "parin",
          "prazole", "sartan", "pril", "statin", "mycin", "cycline", "floxacin", "conazole", "lukast", "glutide",
          "gliptin", "gliflozin", "cept", "kinra", "leukin", "grastim", "poetin", "tide")
_NAMES = ("prednisone", "prednisolone", "dexamethasone", "methylprednisolone", "hydrocortisone", "insulin",
          "warfarin", "heparin", "aspirin", "clopidogrel", "metformin", "everolimus", "sirolimus", "tacrolimus",
          "cyclosporine", "methotrexate", "tamoxifen", "letrozole", "anastrozole", "exemestane", "fulvestrant",
          "temozolomide", "vincristine", "etoposide", "cyclophosphamide", "ifosfamide", "doxorubicin",
          "palifermin", "repaglinide", "amiodarone", "quinine", "flucytosine", "thimerosal", "interferon",
          "growth hormone", "bevacizumab")
_NOT_DRUGS = {"peptide", "nucleotide", "polypeptide", "cleotide", "oligonucleotide", "nucleoside", "cept"}
DRUG = re.compile(r"(?<![\w-])(?:[a-z][a-z-]{2,}(?:" + "|".join(_STEMS) + r")|" + "|".join(_NAMES) + r")(?![\w-])",
                  re.IGNORECASE)
THERAPY_CUE = re.compile(
    r"\b(?:prior|previous|previously|received|receiving|treated|treatment|therapy|exposure|taking|use of|"
    r"using|on|current|concurrent|concomitant|allergy|allergic|hypersensitivity)\b", re.IGNORECASE)
ALLERGY_CUE = re.compile(r"\b(?:allerg|hypersensitiv|intoleran|contraindicat)", re.IGNORECASE)


def drug_mentions(text: str) -> list[tuple[str, int]]:
    """Drug names in `text` (lower case) with where they start, in order."""
    return [(m.group(0).lower(), m.start()) for m in DRUG.finditer(text) if m.group(0).lower() not in _NOT_DRUGS]
