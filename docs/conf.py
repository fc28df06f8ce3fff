"""Sphinx configuration of the course website (`make site`).

The site is built from the committed notebooks and their outputs, never re-executing them
(MyST-NB with `nb_execution_mode = "off"`). `make site` copies chapters/, assets/ and this folder's
index.md into _build/site/src/ (so that the notebooks' `../assets/*.png` links resolve as they do
in JupyterLab) and builds _build/site/html/ with this folder as the configuration directory.

Everything the pages load is served from the site itself, so it works offline: MathJax 3 comes from
the `sphinx-mathjax-offline` package, search is Sphinx's own index, and the ipywidgets JavaScript
(which MyST-NB would fetch from a CDN for the tqdm progress bars) is left out; progress bars show
their text form instead.
"""

import os

project = "minisd"
author = "The minisd authors"
copyright = "The minisd authors, Apache-2.0"
html_title = "minisd: a miniature Stable Diffusion"

extensions = ["myst_nb", "sphinx-mathjax-offline"]
root_doc = "index"
exclude_patterns = ["_build", "**.ipynb_checkpoints", "README*"]

# Notebooks: rendered from their stored outputs, never executed.
nb_execution_mode = "off"
nb_ipywidgets_js = {}  # no CDN: widgets (tqdm bars) fall back to their text/plain form
nb_mime_priority_overrides = [("html", "application/vnd.jupyter.widget-view+json", None),
                              ("html", "application/vnd.jupyter.widget-state+json", None)]
nb_merge_streams = True
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "html_image"]
myst_heading_anchors = 3

# Maths: MathJax 3 from the site's own _static/mathjax (copied there by sphinx-mathjax-offline).
mathjax_path = "mathjax/tex-chtml.js"

html_search_language = "en"  # the course is in English; chapter 09's Chinese is shown, not indexed word by word

html_theme = "sphinx_book_theme"
html_static_path = ["_static"]
html_css_files = ["minisd.css"]
html_theme_options = {
    "use_download_button": True,  # every chapter page offers its .ipynb for download
    "use_fullscreen_button": False,
    "show_toc_level": 2,
    "home_page_in_toc": True,
    "navigation_with_keys": False,
}
# A "launch" button (Colab, Binder) needs the repository's public address; set it, e.g.
# `MINISD_SITE_REPO=https://github.com/OWNER/minisd make site`, and every chapter gets Colab and Binder links.
_repo = os.environ.get("MINISD_SITE_REPO", "").rstrip("/")
if _repo:
    html_theme_options.update(repository_url=_repo, path_to_docs="", use_repository_button=True,
                              repository_branch=os.environ.get("MINISD_SITE_BRANCH", "main"),
                              launch_buttons={"colab_url": "https://colab.research.google.com",
                                              "binderhub_url": "https://mybinder.org",
                                              "notebook_interface": "jupyterlab"})
html_last_updated_fmt = None
html_show_sourcelink = False
suppress_warnings = ["mystnb.unknown_mime_type"]
# Start in light mode: with no mode set, the theme logs "Got invalid theme mode" on a first visit.
html_context = {"default_mode": "light"}
html_favicon = "_static/favicon.png"  # a captioned shape; without one, browsers ask for /favicon.ico and log a 404
