"""The README's examples, executed verbatim from README.md so that they stay true."""

import re
import types
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def load_examples() -> types.ModuleType:
    """Run every ```python block of README.md that defines a view, in one module."""
    module = types.ModuleType("readme")
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    for block in blocks:
        if "def echo_once" in block or "def lower_case" in block:
            exec(compile(block, str(README), "exec"), module.__dict__)
    return module


readme = load_examples()
