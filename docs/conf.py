"""Sphinx configuration for cage-games."""

import os
import sys

sys.path.insert(0, os.path.abspath(".."))
sys.path.insert(0, os.path.abspath("../adapters"))

project = "cage-games"
author = "cage-games developers"
copyright = "2026, cage-games developers"
extensions = ["sphinx.ext.autodoc", "sphinx.ext.mathjax", "sphinx.ext.autosummary", "numpydoc"]
numpydoc_show_class_members = False
numpydoc_validation_checks: set = set()
autodoc_mock_imports = ["torch", "transformers"]
exclude_patterns = ["_build"]
html_theme = "alabaster"
html_static_path = ["_static"]
nitpicky = False
suppress_warnings = ["docutils"]
