"""How many task slots a group can need at once: the widest set of its jobs that may run together.

Two jobs can run at the same time exactly when no path of the execution graph leads from one to
the other (steps in sequence never overlap). The most a group needs at once is therefore its
heaviest *antichain*, each job weighing its replicas (its shards run side by side); summing the
replicas of every job on the group would count steps that run one after another.

By Dilworth's theorem (weighted form) the heaviest antichain weighs as much as the fewest chains
that cover every job as many times as its weight, and that cover is a maximum flow:
``W - maxflow`` on a bipartite network where ``s -> out(u)`` and ``in(v) -> t`` carry the
weights, an edge ``u -> v`` of the graph is ``out(u) -> in(v)``, and ``in(v) -> out(v)`` lets a
chain pass through ``v`` (also through jobs of other groups, which weigh 0). The flow network has
``O(jobs + edges)`` arcs, never the transitive closure. The antichain itself is read off the
minimum cut: the jobs whose ``out`` side is reachable from ``s`` and whose ``in`` side is not.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

_INFINITE = float("inf")


@dataclass(frozen=True)
class Antichain:
    """Jobs that may all run at once (sorted ids) and the sum of their weights."""

    jobs: tuple[str, ...]
    weight: int


def widest_concurrent(weights: Mapping[str, int], edges: Iterable[tuple[str, str]]) -> Antichain:
    """The heaviest set of jobs in ``weights`` with no path between any two of them.

    ``edges`` is the execution graph (it may name jobs absent from ``weights``: they weigh 0 and
    only carry paths). The graph must be acyclic; a job of weight 0 is never reported.
    """
    nodes = sorted(set(weights) | {n for edge in edges for n in edge})
    index = {node: i for i, node in enumerate(nodes)}
    network = _Network(2 * len(nodes) + 2)
    source, sink = 2 * len(nodes), 2 * len(nodes) + 1
    out_side = lambda i: 2 * i  # noqa: E731  (chains leave a job from here)
    in_side = lambda i: 2 * i + 1  # noqa: E731  (and arrive here)
    for node, i in index.items():
        weight = weights.get(node, 0)
        if weight > 0:
            network.add(source, out_side(i), weight)
            network.add(in_side(i), sink, weight)
        network.add(in_side(i), out_side(i), _INFINITE)
    for src, dst in edges:
        network.add(out_side(index[src]), in_side(index[dst]), _INFINITE)
    network.max_flow(source, sink)
    reached = network.reachable(source)
    chosen = tuple(
        node for node, i in index.items()
        if weights.get(node, 0) > 0 and out_side(i) in reached and in_side(i) not in reached
    )
    return Antichain(chosen, sum(weights[node] for node in chosen))


class _Network:
    """A flow network with Dinic's algorithm (BFS levels, DFS blocking flows)."""

    def __init__(self, size: int):
        self.arcs: list[list[int]] = [[] for _ in range(size)]
        self.head: list[int] = []
        self.capacity: list[float] = []

    def add(self, src: int, dst: int, capacity: float) -> None:
        self.arcs[src].append(len(self.head))
        self.head.append(dst)
        self.capacity.append(capacity)
        self.arcs[dst].append(len(self.head))
        self.head.append(src)
        self.capacity.append(0)

    def max_flow(self, source: int, sink: int) -> int:
        flow = 0
        while (level := self._levels(source, sink)) is not None:
            cursor = [0] * len(self.arcs)
            while pushed := self._push(source, sink, _INFINITE, level, cursor):
                flow += pushed
        return int(flow)

    def reachable(self, source: int) -> set[int]:
        """Nodes reachable from ``source`` through arcs with capacity left (the cut's near side)."""
        seen, queue = {source}, deque([source])
        while queue:
            node = queue.popleft()
            for arc in self.arcs[node]:
                if self.capacity[arc] > 0 and self.head[arc] not in seen:
                    seen.add(self.head[arc])
                    queue.append(self.head[arc])
        return seen

    def _levels(self, source: int, sink: int) -> list[int] | None:
        level = [-1] * len(self.arcs)
        level[source] = 0
        queue = deque([source])
        while queue:
            node = queue.popleft()
            for arc in self.arcs[node]:
                if self.capacity[arc] > 0 and level[self.head[arc]] < 0:
                    level[self.head[arc]] = level[node] + 1
                    queue.append(self.head[arc])
        return level if level[sink] >= 0 else None

    def _push(self, source: int, sink: int, limit: float, level: list[int], cursor: list[int]) -> float:
        """One augmenting path along increasing levels, iteratively (graphs can be deep)."""
        path: list[int] = []  # arcs taken from the source
        node = source
        while True:
            if node == sink:
                pushed = min(min(self.capacity[arc] for arc in path), limit)
                for arc in path:
                    self.capacity[arc] -= pushed
                    self.capacity[arc ^ 1] += pushed
                return pushed
            arcs = self.arcs[node]
            while cursor[node] < len(arcs):
                arc = arcs[cursor[node]]
                if self.capacity[arc] > 0 and level[self.head[arc]] == level[node] + 1:
                    break
                cursor[node] += 1
            else:
                if node == source:
                    return 0
                level[node] = -1  # a dead end: never try it again in this phase
                arc = path.pop()
                node = self.head[arc ^ 1]
                cursor[node] += 1
                continue
            path.append(arc)
            node = self.head[arc]
