"""Package list: every `connector*` package plus the data folders pyproject.toml maps into it.

`[tool.setuptools.packages.find]` cannot list packages whose directory lies outside `connector/`
(the repository's `schemas/`, `mappings/`, `examples/ctgov/`), and an explicit list in
pyproject.toml would silently drop any new sub-package; so the list is computed here.
"""

from setuptools import find_packages, setup

DATA_PACKAGES = ["connector.schemas", "connector.schemas.ctgov", "connector.bundled_mappings", "connector.bundled_records"]

setup(packages=find_packages(include=["connector", "connector.*"]) + DATA_PACKAGES)
