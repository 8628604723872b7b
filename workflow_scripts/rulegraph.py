"""Draw `snakemake --rulegraph` (DOT on stdin) as a PNG without Graphviz: rules in layers by
longest path from the raw data, arrows between them. `make rulegraph` writes docs/rulegraph.png."""

from __future__ import annotations

import re
import sys
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

NODE = re.compile(r'^\s*(\d+)\[label = "([^"]+)"')
EDGE = re.compile(r"^\s*(\d+) -> (\d+)")


def parse_dot(text: str) -> tuple[dict[str, str], list[tuple[str, str]]]:
    nodes = {match[1]: match[2] for line in text.splitlines() if (match := NODE.match(line))}
    edges = [(match[1], match[2]) for line in text.splitlines() if (match := EDGE.match(line))]
    return nodes, edges


def layers(nodes: dict[str, str], edges: list[tuple[str, str]]) -> dict[str, int]:
    """Layer of each node = longest path from a node without inputs (edges run producer -> consumer)."""
    parents = defaultdict(list)
    for source, target in edges:
        parents[target].append(source)
    depth: dict[str, int] = {}

    def visit(node: str) -> int:
        if node not in depth:
            depth[node] = 1 + max((visit(parent) for parent in parents[node]), default=-1)
        return depth[node]

    for node in nodes:
        visit(node)
    return depth


def draw(text: str, output: Path) -> None:
    nodes, edges = parse_dot(text)
    depth = layers(nodes, edges)
    by_layer = defaultdict(list)
    for node in sorted(nodes, key=lambda n: nodes[n]):
        by_layer[depth[node]].append(node)
    position = {}
    for layer, members in by_layer.items():
        for index, node in enumerate(members):
            position[node] = ((index - (len(members) - 1) / 2) * 3.2, -layer * 1.2)
    width = max(len(m) for m in by_layer.values()) * 3.2 + 1
    figure, axes = plt.subplots(figsize=(max(6, width), 1.2 * len(by_layer) + 1))
    for source, target in edges:
        axes.annotate("", xy=position[target], xytext=position[source],
                      arrowprops=dict(arrowstyle="-|>", color="#555555", shrinkA=14, shrinkB=14))
    for node, (x, y) in position.items():
        axes.text(x, y, nodes[node], ha="center", va="center", fontsize=10,
                  bbox=dict(boxstyle="round,pad=0.4", facecolor="#dbe9f6", edgecolor="#2b6cb0"))
    xs, ys = zip(*position.values())
    axes.set_xlim(min(xs) - 1.8, max(xs) + 1.8)
    axes.set_ylim(min(ys) - 0.6, max(ys) + 0.6)
    axes.set_axis_off()
    axes.set_title("Workflow rules (arrows: output of one rule is input of the next)")
    figure.tight_layout()
    figure.savefig(output, dpi=130)


if __name__ == "__main__":
    draw(sys.stdin.read(), Path(sys.argv[1]))
