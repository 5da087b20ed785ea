"""Write docs/api.md from the public docstrings: python3 docs/make_api.py"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import revolve  # noqa: E402
from revolve import ad  # noqa: E402


def summary(obj) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.split("\n\n")[0].replace("\n", " ")


def signature(name, obj) -> str:
    try:
        return f"{name}{inspect.signature(obj)}"
    except (TypeError, ValueError):
        return name


def section(title, module, names) -> list[str]:
    out = [f"## {title}", ""]
    for name in names:
        obj = getattr(module, name)
        if not (callable(obj) or inspect.isclass(obj)):
            continue
        out.append(f"- `{signature(name, obj)}`: {summary(obj)}")
    return out + [""]


def main() -> int:
    lines = ["# API reference", "",
             "Generated from the docstrings by `python3 docs/make_api.py`; each object's docstring has its",
             "arguments, errors and an example.", ""]
    core = [n for n in revolve.__all__ if n not in ("Action",)]
    lines += section("revolve", revolve, core)
    lines += section("revolve.ad", ad, [n for n in ad.__all__ if n not in ("RULES",)])
    try:
        from revolve.integrations import torch as rt

        lines += section("revolve.integrations.torch", rt, rt.__all__)
    except ImportError:
        lines += ["## revolve.integrations.torch", "", "(install torch to document it)", ""]
    (ROOT / "docs" / "api.md").write_text("\n".join(lines))
    print("wrote docs/api.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
