"""Collection rules for the whole repository (pytest runs doctests in calibviz/ too)."""

import importlib.util

# calibviz.losses needs the optional torch extra; without it its doctests are not collected
collect_ignore = [] if importlib.util.find_spec("torch") else ["calibviz/losses.py"]
