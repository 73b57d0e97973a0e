"""Sphinx configuration of the learnrules documentation (``make docs``; warnings are errors)."""

import logging
import os
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
logging.getLogger("learnrules").setLevel(logging.WARNING)  # keep the build log to what needs attention
os.environ.setdefault("OMP_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # sg_scraper

project = "learnrules"
author = "learnrules developers"
copyright = "2025, learnrules developers"  # noqa: A001

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.intersphinx",
    "numpydoc",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "tutorials"]
root_doc = "index"

html_theme = "furo"
html_title = "learnrules"

# API reference from the docstrings (numpydoc format, checked by ruff's D rules).
autosummary_generate = True
autodoc_typehints = "none"  # the numpydoc "Parameters" sections carry the types
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "undoc-members": False, "show-inheritance": False}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
numpydoc_validation_checks = set()

myst_enable_extensions = ["dollarmath", "colon_fence"]
myst_heading_anchors = 3

intersphinx_mapping = {}



# Tutorials: Python scripts executed at build time; a failing tutorial fails the build.
sphinx_gallery_conf = {
    "image_scrapers": ("matplotlib", "sg_scraper.figure_scraper"),
    "examples_dirs": "tutorials",
    "gallery_dirs": "auto_tutorials",
    "filename_pattern": r"/plot_",
    "within_subsection_order": "FileNameSortKey",
    "abort_on_example_error": True,
    "only_warn_on_example_error": False,
    "download_all_examples": False,
    "remove_config_comments": True,
    "reset_modules": ("matplotlib",),
    "show_memory": False,
    "capture_repr": ("_repr_html_", "__repr__"),
    "min_reported_time": 0,
}
