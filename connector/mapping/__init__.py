"""Trial mappings: criteria as YAML data, validated, loaded into a small model."""

from connector.mapping.hashing import criteria_hash, criteria_text_of, hash_mismatch_warning
from connector.mapping.catalog import (MappingEntry, MappingSources, available_mappings, find_mapping,
                                       load_resolved, load_trial_mapping, resolve_mapping)
from connector.mapping.loader import build_mapping, load_mapping
from connector.mapping.model import Criterion, Mapping
from connector.mapping.needs import data_needs

__all__ = ["Criterion", "Mapping", "MappingEntry", "MappingSources", "available_mappings", "build_mapping",
           "criteria_hash", "criteria_text_of", "data_needs", "find_mapping", "hash_mismatch_warning",
           "load_mapping", "load_resolved", "load_trial_mapping", "resolve_mapping"]
