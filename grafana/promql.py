"""The metric names a PromQL expression reads, to check them against real /metrics output.

Not a PromQL parser: it removes what is not a metric name (strings, label matchers, range
and offset brackets, the functions and keywords the dashboards use) and keeps the
identifiers that are left. A histogram's ``_bucket``/``_sum``/``_count`` samples belong to
the family without the suffix; ``exposed_names`` adds both spellings for what a process
serves, so either side may use them.
"""

from __future__ import annotations

import re

_KEYWORDS = frozenset(
    {
        # aggregations and their modifiers
        "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk",
        "quantile", "count_values", "group", "by", "without", "on", "ignoring",
        "group_left", "group_right", "bool", "and", "or", "unless", "offset",
        # functions
        "rate", "irate", "increase", "delta", "idelta", "deriv", "histogram_quantile",
        "abs", "ceil", "floor", "round", "clamp_min", "clamp_max", "time", "vector",
        "scalar", "label_replace", "label_join", "sort", "sort_desc", "absent",
        "sum_over_time", "avg_over_time", "max_over_time", "min_over_time",
        "last_over_time", "changes", "resets", "predict_linear", "timestamp",
        "histogram_sum", "histogram_count", "inf", "nan",
    }
)  # fmt: skip

_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_LABEL_MATCHERS = re.compile(r"\{[^}]*\}")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_RANGES = re.compile(r"\[[^\]]*\]|\boffset\s+-?[\w$]+|@\s*[\w.()]+")
_IDENTIFIER = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def metric_names(expr: str) -> set[str]:
    """The metric names ``expr`` selects."""
    text = _STRINGS.sub(" ", expr)
    text = _LABEL_MATCHERS.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    text = _RANGES.sub(" ", text)
    text = re.sub(r"(?<![\w.])\d+(\.\d+)?(e[+-]?\d+)?", " ", text)  # numbers
    return {name for name in _IDENTIFIER.findall(text) if name.lower() not in _KEYWORDS}


def exposed_names(exposition: str) -> set[str]:
    """Metric names a /metrics page offers: every sample name, every family declared by
    ``# TYPE`` (a labelled metric with no samples yet still declares itself), and the
    family name of each histogram/summary sample."""
    names: set[str] = set()
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            parts = line.split()
            if len(parts) >= 4:
                family, kind = parts[2], parts[3]
                names.add(family)
                if kind == "counter" and not family.endswith("_total"):
                    names.add(family + "_total")
                if kind in ("histogram", "summary"):
                    names.update(family + suffix for suffix in _HISTOGRAM_SUFFIXES)
            continue
        if not line or line.startswith("#"):
            continue
        match = _IDENTIFIER.match(line)
        if match:
            names.add(match.group(0))
    return names
