"""A ClientApp for fault-injection tests: privsynth's own, except that the owner with partition
id ``CRASH_PARTITION`` exits (its process dies) inside its round-``CRASH_ROUND`` training, after
the SecAgg+ key exchange. Run by SuperNodes as ``faulty_client:app`` (PYTHONPATH: this folder)."""

from __future__ import annotations

import os

from flwr.clientapp import ClientApp

from privsynth.federated import client_app as real

CRASH_PARTITION, CRASH_ROUND = 3, 1

app = ClientApp(mods=[real.traffic_mod])
app.query("report")(real.report)


@app.train(mods=[real.secure_mod])
def train(msg, context):
    from flwr.compat.common import recorddict_compat as compat

    if "fitins.parameters" in msg.content.array_records:  # SecAgg+ workflow (legacy records)
        server_round = int(compat.recorddict_to_fitins(msg.content, True).config["server-round"])
    else:
        server_round = int(msg.content["config"]["server-round"])
    pid = int(context.node_config.get("partition-id", -1))
    if (pid, server_round) == (CRASH_PARTITION, CRASH_ROUND):
        os._exit(17)
    return real.train(msg, context)
