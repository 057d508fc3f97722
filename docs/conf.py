"""Sphinx configuration of the mmbasis documentation.

Build (what ``make docs`` and ``tests/test_docs.py`` run; warnings are errors, so a broken internal link or anchor,
a page outside every table of contents or a docstring Sphinx cannot read fails the build)::

    sphinx-build -W --keep-going -b html docs docs/_build/html

Pages are Markdown read by MyST, as in mmdet and mmengine. The theme is sphinx_rtd_theme from PyPI: OpenMMLab's
own pytorch_sphinx_theme (a fork of it) is installed from GitHub only, which the set-up cannot reach, and the Read the
Docs theme gives readers of the mmdet/mmengine documentation the same layout.
"""

import os
import shutil
import sys

DOCS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(DOCS)
sys.path.insert(0, ROOT)  # document this checkout's mmbasis, not another installed copy

# The API pages are generated (autosummary) into docs/api/generated/ at every build; stale pages of modules that
# were moved or removed would otherwise stay behind and fail the build.
shutil.rmtree(os.path.join(DOCS, 'api', 'generated'), ignore_errors=True)

project = 'mmbasis'
author = 'the mmbasis authors'
copyright = 'the mmbasis authors; Apache License 2.0'

extensions = [
    'myst_parser',
    'sphinx.ext.autodoc',
    'sphinx.ext.autosummary',
    'sphinx.ext.napoleon',
]

source_suffix = {'.md': 'markdown', '.rst': 'restructuredtext'}
root_doc = 'index'
# docs/results/ holds what the tools write (CSV, PNG, summaries): pages link to them; a CSV or PNG becomes a
# download, a Markdown summary a page of its own outside the tables of contents (see setup() below).
exclude_patterns = ['_build', '_templates']
templates_path = ['_templates']

# MyST: headings up to level 3 get anchors, so `page.md#heading` links are checked like page links.
myst_heading_anchors = 3
myst_enable_extensions = ['dollarmath']

# API reference: Google-style docstrings (napoleon); an "Attributes:" section becomes instance-variable fields,
# not a second description of each attribute. ignore-module-all: a package's __all__ re-exports are documented in
# the module that defines them only (one target per name).
autosummary_generate = True
autosummary_imported_members = False
autodoc_default_options = {'member-order': 'bysource', 'ignore-module-all': True}
autodoc_typehints = 'description'
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = True

html_theme = 'sphinx_rtd_theme'
html_title = 'mmbasis'
html_show_sourcelink = False


def _results_are_orphans(app, docname, source):
    """The summaries under docs/results/ are written by tools, linked from the pages, and in no table of contents."""
    if docname.startswith('results/'):
        source[0] = '---\norphan: true\n---\n' + source[0]


def setup(app):
    app.connect('source-read', _results_are_orphans)
