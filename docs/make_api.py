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


def render() -> str:
    """The text of docs/api.md (the tests check that the file is current)."""
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
    from revolve.integrations import checkpoint_schedules as cs  # optional peer imported lazily by its functions

    lines += section("revolve.integrations.checkpoint_schedules", cs, cs.__all__)
    return "\n".join(lines)


def main() -> int:
    (ROOT / "docs" / "api.md").write_text(render())
    print("wrote docs/api.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
