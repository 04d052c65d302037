"""The run page's trace timeline: a run's spans as rows of a tree, each with its bar on one time axis."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from slipstream_proto import RunSpan

# Bars are drawn in an SVG 1,000 units wide; the shortest is still visible.
WIDTH = 1000
MIN_BAR = 3
MAX_DEPTH = 12


@dataclass(frozen=True)
class TimelineRow:
    span: RunSpan
    depth: int
    offset_ms: float
    x: int
    width: int


def timeline(spans: list[RunSpan]) -> tuple[list[TimelineRow], float]:
    """The spans in tree order (children right under their parent, each level by start time) and
    the whole trace's length in ms. A span whose parent is not among them is a root."""
    if not spans:
        return [], 0.0
    ids = {span.span_id for span in spans}
    children: defaultdict[str | None, list[RunSpan]] = defaultdict(list)
    for span in spans:
        children[span.parent_span_id if span.parent_span_id in ids else None].append(span)
    start = min(span.start_time for span in spans)
    end = max(span.end_time for span in spans)
    total_ms = max((end - start).total_seconds() * 1000, 0.001)
    rows: list[TimelineRow] = []
    seen: set[str] = set()

    def visit(parent: str | None, depth: int) -> None:
        for span in sorted(children.get(parent, []), key=lambda s: (s.start_time, s.span_id)):
            if span.span_id in seen:  # a cycle of parent ids cannot loop the page
                continue
            seen.add(span.span_id)
            offset = (span.start_time - start).total_seconds() * 1000
            x = min(WIDTH - MIN_BAR, round(offset / total_ms * WIDTH))
            width = max(MIN_BAR, min(WIDTH - x, round(span.duration_ms / total_ms * WIDTH)))
            rows.append(TimelineRow(span, min(depth, MAX_DEPTH), offset, x, width))
            visit(span.span_id, depth + 1)

    visit(None, 0)
    return rows, total_ms
