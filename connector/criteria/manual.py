"""Criteria that patient data cannot decide (consent, contraception, RECIST progression...).

They always come out unknown with reason `manual`: listed for the reviewer, and never
lowering a patient's status.
"""

from __future__ import annotations

from connector.criteria.base import EvalContext, Outcome, unknown
from connector.mapping.model import ManualRule


def evaluate_manual(rule: ManualRule, ctx: EvalContext) -> Outcome:
    return unknown("manual")
