"""Owners that vanish mid-protocol, for in-process federations: a test-side ``InProcessGrid``."""

from __future__ import annotations

import functools

from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key

from privsynth.federated import inprocess


class DroppingGrid(inprocess.InProcessGrid):
    """``drop={i: stage}``: owner ``i`` becomes unreachable when the SecAgg+ protocol reaches
    ``stage`` (e.g. ``"collect_masked_vectors"``, after it shared its keys): a dropout."""

    def __init__(self, node_configs, run_config, run_id: int = 1, *, drop: dict[int, str]):
        super().__init__(node_configs, run_config, run_id)
        nodes = list(self.contexts)
        self.drop = {nodes[i]: stage for i, stage in drop.items()}
        self.dropped: set[int] = set()

    def get_node_ids(self):
        return [n for n in super().get_node_ids() if n not in self.dropped]

    def push_messages(self, messages):
        kept = []
        for msg in messages:
            dst = msg.metadata.dst_node_id
            secagg = msg.content.config_records.get(RECORD_KEY_CONFIGS)
            if secagg is not None and self.drop.get(dst) == secagg.get(Key.STAGE):
                self.dropped.add(dst)
            if dst not in self.dropped:
                kept.append(msg)
        return super().push_messages(kept)


def drop_in_federate(monkeypatch, drop: dict[int, str]) -> None:
    """Make ``federate(mode="inprocess")`` run on a ``DroppingGrid`` with ``drop``."""
    monkeypatch.setattr(inprocess, "InProcessGrid", functools.partial(DroppingGrid, drop=drop))
