"""Draft a trial mapping from registry text (`trial-connector mappings draft`) and measure
drafts against hand-written gold annotations (`trial-connector mappings evaluate`)."""

from connector.drafting.draft import Draft, draft_mapping

__all__ = ["Draft", "draft_mapping"]
