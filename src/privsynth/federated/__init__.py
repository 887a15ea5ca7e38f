"""Federated training across data owners on Flower (ServerApp + ClientApp, Message API), with
SecAgg+ secure aggregation, CKKS encrypted aggregation and sample-/client-level DP.

Layout follows Flower's example apps: ``task.py`` (model, data, local training), ``client_app.py``,
``server_app.py``; plus ``partition.py``, ``secure.py`` (SecAgg+), ``encrypted.py`` (CKKS),
``card.py`` (the guarantees), ``launch.py`` (local SuperLink + SuperNodes), ``inprocess.py``.
"""

from .api import federate

__all__ = ["federate"]
