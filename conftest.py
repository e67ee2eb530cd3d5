"""Collection rules for the whole repository (pytest runs doctests in calibviz/ too)."""

import importlib.util


def _missing(*packages: str) -> bool:
    return not all(importlib.util.find_spec(name) for name in packages)


# modules needing optional extras: without them their doctests are not collected
collect_ignore = [
    path
    for path, needs in (
        ("calibviz/losses.py", ("torch",)),
        ("calibviz/_torch_calibration.py", ("torch",)),
        ("calibviz/torch_binning.py", ("torch",)),
        ("calibviz/_loss_inputs.py", ("torch",)),
        ("calibviz/torchmetrics.py", ("torch", "torchmetrics")),
        ("calibviz/monai.py", ("torch", "monai")),
    )
    if _missing(*needs)
]
