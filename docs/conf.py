"""Sphinx configuration of the django-websocket documentation.

Build: ``sphinx-build -W --keep-going -n -b html docs docs/_build/html``
(``make docs``). The build needs no network: no intersphinx.
"""

import os
import sys
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version

DOCS_DIR = os.path.dirname(os.path.abspath(__file__))
ROOT_DIR = os.path.dirname(DOCS_DIR)

# Autodoc imports django_websocket, which needs configured settings. Prefer the
# installed package (pip install -e .); fall back to src/ for a bare checkout.
sys.path.insert(0, DOCS_DIR)
try:
    import django_websocket  # noqa: F401
except ImportError:
    sys.path.insert(0, os.path.join(ROOT_DIR, "src"))

os.environ["DJANGO_SETTINGS_MODULE"] = "_settings"

import django  # noqa: E402

django.setup()

# -- Project -----------------------------------------------------------------

project = "django-websocket"
author = "django-websocket developers"
copyright = "django-websocket developers"
try:
    release = package_version("django-websocket")
except PackageNotFoundError:  # not installed: the source tree's version
    from django_websocket import __version__ as release
version = ".".join(release.split(".")[:2])

# -- General -----------------------------------------------------------------

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]

source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "README.md"]
templates_path: list[str] = []

# MyST: ``[text](page.md#anchor)`` links to headings of levels 1 to 3.
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence", "deflist"]

# Autodoc and napoleon (Google-style docstrings).
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented"
autodoc_preserve_defaults = True
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_attr_annotations = True

# The build needs no network, so no intersphinx: references to the standard
# library and to Django cannot resolve, and nitpicky mode (-n) ignores them.
# Private names (type variables such as ``_View``) have no entry either.
nitpicky = True
nitpick_ignore_regex = [
    ("py:class", r"collections\.abc\.\w+"),
    ("py:class", r"django\..+"),
    ("py:class", r"django_websocket(\.\w+)*\._\w+"),
]

# -- HTML --------------------------------------------------------------------

html_theme = "furo"
html_title = f"django-websocket {release}"
html_static_path: list[str] = []
