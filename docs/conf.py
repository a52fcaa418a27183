"""Sphinx configuration: the API reference from the docstrings, the notes in Markdown (MyST).

Build (warnings are errors): ``python -m sphinx -W --keep-going -b html docs docs/_build/html``.
"""

import learned_opt

project = "learned_opt"
release = version = learned_opt.__version__
extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.mathjax", "myst_parser"]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build"]
root_doc = "index"

# Google-style docstrings; signatures keep the type hints, descriptions stay readable.
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = True  # "Attributes:" as fields: NamedTuple fields are documented once
autodoc_typehints = "signature"
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "show-inheritance": True}
add_module_names = False
nitpicky = False

myst_heading_anchors = 3
html_theme = "alabaster"
html_title = f"learned_opt {release}"


def _link_results(app, docname, source):
    """Notes link to ``../benchmarks/RESULTS.md`` (right on GitHub); here it is ``results``."""
    source[0] = source[0].replace("](../benchmarks/RESULTS.md)", "](results.md)")


def setup(app):
    app.connect("source-read", _link_results)
