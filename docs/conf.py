"""Sphinx configuration for the smtp-proto documentation.

Build with ``bash docs/build.sh`` (it sets up a virtual environment), or, where the package
and the ``docs`` extra are installed::

    sphinx-build -W --keep-going -b html docs docs/_build/html
    sphinx-build -W --keep-going -b doctest docs docs/_build/doctest

Sphinx must import the installed package (``pip install -e .``): the source tree alone has
no ``smtp_proto.transports``, which is installed from the top-level ``transports/`` folder.
"""

from __future__ import annotations

import sys
from importlib.metadata import version as installed_version
from pathlib import Path

# The project's own Sphinx extension: tables and a diagram generated from the engine.
sys.path.insert(0, str(Path(__file__).resolve().parent / "_ext"))

import smtp_proto_docs

# smtp_proto presents its public classes as smtp_proto.X (their __module__ says so), which
# hides from autodoc the module whose source holds their ``#:`` attribute comments. For the
# build only, point each class back at the module that defines it; the pages still name
# every class smtp_proto.X, as written in the directives.
smtp_proto_docs.restore_defining_modules()

project = "smtp-proto"
author = "smtp-proto developers"
copyright = "smtp-proto developers"
release = installed_version("smtp-proto")
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.doctest",
    "sphinx.ext.graphviz",
    "smtp_proto_docs",
]

root_doc = "index"
exclude_patterns = ["_build", "examples"]
templates_path: list[str] = []

# -- autodoc -------------------------------------------------------------------------------
autodoc_member_order = "bysource"
autodoc_typehints = "description"
# Types go with the parameters a docstring describes; the fields of a dataclass are
# described as attributes instead, from their ``#:`` comments.
autodoc_typehints_description_target = "documented"
# Types are shown as written in the source (``Mapping[str, str | None]``), unqualified.
autodoc_typehints_format = "short"

# -- doctest -------------------------------------------------------------------------------
# Every page's examples run with the package imported. The star import is for docstrings
# that name functions bare (``xtext_encode(...)``); the pages themselves always write
# ``smtp_proto.``.
# Hypothesis's default deadline (200 ms per example) fails examples on a loaded machine for
# no fault of theirs; the test suite turns it off too (tests/conftest.py).
doctest_global_setup = """
import smtp_proto
from smtp_proto import *

try:
    import hypothesis
except ImportError:
    pass
else:
    hypothesis.settings.register_profile("docs", deadline=None)
    hypothesis.settings.load_profile("docs")
"""

# -- graphviz ------------------------------------------------------------------------------
# The state diagram is drawn only where the dot program is installed (see the extension);
# the tables on the same page need nothing.
graphviz_output_format = "svg"

# -- HTML ----------------------------------------------------------------------------------
html_theme = "furo"
html_title = f"smtp-proto {release}"
html_static_path: list[str] = []
html_show_sourcelink = False
