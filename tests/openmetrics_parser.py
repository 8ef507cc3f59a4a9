"""Parses exposition files with the reference parsers of PyPI's prometheus-client.

Usage: openmetrics_parser.py FORMAT FILE [FORMAT FILE ...]
FORMAT is `openmetrics` or `text` (Prometheus 0.0.4). Exits non-zero, with
the parser's message, when any file is rejected.
"""

import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

PARSERS = {"openmetrics": parse_openmetrics, "text": parse_text}

args = sys.argv[1:]
for kind, path in zip(args[::2], args[1::2]):
    with open(path, encoding="utf-8") as file:
        families = list(PARSERS[kind](file.read()))
    samples = sum(len(family.samples) for family in families)
    print(f"{path}: {kind}: {len(families)} families, {samples} samples")
    for family in families:
        print(f"  {family.name} {family.type} {[(s.name, s.labels, s.value) for s in family.samples]}")
