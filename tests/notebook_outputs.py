"""Whether a notebook's committed outputs are what a fresh run prints (tests/test_notebook.py,
and ``python notebooks/refresh.py --check``).

Every code cell's outputs are compared in order: the same kinds (a stream, a result, a picture)
with the same formats. Pictures are compared by presence only (their bytes depend on matplotlib's
version). Texts (streams, ``text/plain``, ``text/html``) are compared after masking timings: a
number followed by ``s``, ``ms``, ``images/s`` or ``model-images/s``. The rest must be equal,
character for character, but in the cells tagged ``blas``: there the products go through BLAS,
whose sums run in an order that depends on the CPU, and numbers may differ by ``POINTS`` points
when they are percentages, by ``RELATIVE`` of their value otherwise; everything around the
numbers must still be equal.
"""

from __future__ import annotations

import re

BLAS_TAG = "blas"
# The spread across CPUs of the deeper networks' figures: the mlp preset gave 98.24% on one CPU
# and 98.20% on another (98.18% with one BLAS thread); a tolerance several times that.
POINTS = 0.3
# The test losses of the same runs (about 0.06 for the hidden layer) move by a few percent.
RELATIVE = 0.1

TIMING = re.compile(r"\d+(?:,\d{3})*(?:\.\d+)?(?=\s?(?:s|ms|images/s|model-images/s)\b)")
NUMBER = re.compile(r"\d+(?:,\d{3})*(?:\.\d+)?(?:e[-+]?\d+)?")
TEXTS = ("text/plain", "text/html")
# Why auto chose NumPy depends on what the machine has installed (CuPy, PyTorch, which build).
AUTO_REASON = re.compile(r"(backend auto: using NumPy on the CPU because ).*")


def masked(text: str) -> str:
    return AUTO_REASON.sub(r"\1<why>", TIMING.sub("<time>", text))


def _numbers(text: str):
    """(the text with each number replaced by a mark, [(value, is a percentage)])."""
    found = []

    def mark(match):
        after = match.string[match.end():match.end() + 1]
        found.append((float(match.group().replace(",", "")), after == "%"))
        return "<n>"
    return NUMBER.sub(mark, text), found


def text_difference(committed: str, fresh: str, tolerant: bool) -> str | None:
    """None when the two texts agree (see the module's docstring), else what differs."""
    committed, fresh = masked(committed), masked(fresh)
    if committed == fresh:
        return None
    if not tolerant:
        return _first_difference(committed, fresh)
    (shape_a, numbers_a), (shape_b, numbers_b) = _numbers(committed), _numbers(fresh)
    if shape_a != shape_b or len(numbers_a) != len(numbers_b):
        return _first_difference(committed, fresh)
    for (a, percent), (b, _) in zip(numbers_a, numbers_b):
        if abs(a - b) > (POINTS if percent else RELATIVE * max(abs(a), abs(b))):
            unit = "%" if percent else ""
            limit = f"{POINTS} points" if percent else f"{RELATIVE:.0%} of the value"
            return f"{a:g}{unit} committed, {b:g}{unit} now (tolerance {limit})"
    return None


def _first_difference(a: str, b: str) -> str:
    at = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    start = max(0, at - 40)
    return f"committed ...{a[start:at + 40]!r}... but now ...{b[start:at + 40]!r}..."


def _kind(output) -> tuple:
    if output.output_type == "stream":
        return ("stream", output.name)
    if output.output_type == "error":
        return ("error", output.ename)
    return (output.output_type, tuple(sorted(output.get("data", {}))))


def _texts(output) -> list[tuple[str, str]]:
    if output.output_type == "stream":
        return [(output.name, output.text)]
    data = output.get("data", {})
    return [(key, _joined(data[key])) for key in TEXTS if key in data]


def _joined(value) -> str:
    return "".join(value) if isinstance(value, list) else value


def differences(committed, fresh) -> list[str]:
    """Each way in which ``fresh`` (the same notebook, run again) differs from ``committed``,
    one line each; [] when its outputs are fresh."""
    found = []
    if len(committed.cells) != len(fresh.cells):
        return [f"{len(committed.cells)} cells committed, {len(fresh.cells)} run"]
    for index, (old, new) in enumerate(zip(committed.cells, fresh.cells)):
        if old.cell_type != "code":
            continue
        first_line = old.source.splitlines()[0] if old.source else ""
        where = f"cell {index} ({first_line})"
        for output in new.outputs:
            if output.output_type == "error":
                found.append(f"{where}: raised {output.ename}: {output.evalue}")
        kinds_old, kinds_new = list(map(_kind, old.outputs)), list(map(_kind, new.outputs))
        if kinds_old != kinds_new:
            found.append(f"{where}: outputs {kinds_old} committed, {kinds_new} now")
            continue
        tolerant = BLAS_TAG in old.metadata.get("tags", [])
        for a, b in zip(old.outputs, new.outputs):
            for (what, text_a), (_, text_b) in zip(_texts(a), _texts(b)):
                problem = text_difference(text_a, text_b, tolerant)
                if problem:
                    found.append(f"{where}, {what}: {problem}")
    return found
