"""A fast in-process federation for tests and benchmarks: the same ServerApp and ClientApp code,
with messages handed over by function call (no networking, no processes) through a Flower
``Grid``. Each owner keeps its own ``Context`` across rounds, as on a SuperNode; SecAgg+ runs
here too (the protocol is in Flower's workflow and mod, whatever carries the messages).
"""

from __future__ import annotations

import copy
import itertools
from typing import Iterable

from flwr.app import Context, Message, RecordDict
from flwr.serverapp import Grid

from .client_app import app as client_app

_ids = itertools.count(1)


class InProcessGrid(Grid):
    def __init__(self, node_configs: list[dict], run_config: dict, run_id: int = 1):
        self._run_id = run_id
        self.contexts = {
            1000 + i: Context(
                run_id=run_id,
                node_id=1000 + i,
                node_config=dict(nc),
                state=RecordDict(),
                run_config=dict(run_config),
            )
            for i, nc in enumerate(node_configs)
        }
        self._replies: dict[str, Message] = {}

    def set_run(self, run) -> None:  # the in-process run is fixed at construction
        pass

    @property
    def run(self):
        from flwr.supercore.run import Run

        return Run.create_empty(self._run_id)

    def create_message(
        self,
        content: RecordDict,
        message_type: str,
        dst_node_id: int,
        group_id: str,
        ttl: float | None = None,
    ) -> Message:
        msg = Message(content, message_type=message_type, dst_node_id=dst_node_id)
        msg.metadata.group_id = group_id
        return msg

    def get_node_ids(self) -> Iterable[int]:
        return list(self.contexts)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        ids = []
        for msg in messages:
            mid = f"m{next(_ids)}"
            msg.metadata.__dict__["_message_id"] = mid
            # a deep copy stands in for serialization: nothing is shared between the two sides
            reply = client_app(copy.deepcopy(msg), self.contexts[msg.metadata.dst_node_id])
            self._replies[mid] = copy.deepcopy(reply)
            ids.append(mid)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return [self._replies.pop(m) for m in message_ids if m in self._replies]

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        return self.pull_messages(self.push_messages(messages))


def server_context(run_config: dict, run_id: int = 1) -> Context:
    """The ServerApp's context; also sets Flower's process identity, which messages read."""
    from flwr.supercore.task_identity import TaskIdentity

    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = run_id, 0, 0
    return Context(
        run_id=run_id, node_id=0, node_config={}, state=RecordDict(), run_config=dict(run_config)
    )
