"""Federated training across data owners on Flower (ServerApp + ClientApp, Message API), with
SecAgg+ secure aggregation, CKKS encrypted aggregation and sample-/client-level DP.

Layout follows Flower's example apps: ``task.py`` (model, data, local training), ``client_app.py``,
``server_app.py``; plus ``partition.py``, ``secure.py`` (SecAgg+), ``encrypted.py`` (CKKS),
``card.py`` (the guarantees), ``launch.py`` (local SuperLink + SuperNodes), ``inprocess.py``,
``oneshot.py`` + ``oneshot_card.py`` (dpmerf/dpkernel: one noisy sum under SecAgg+, CKKS
(``oneshot_ckks.py``) or plain aggregation).

Flower and TenSEAL are an extra (``pip install 'privsynth[federated]'``): central training does
not need them, so importing this package without Flower stops at once with one line naming it.
"""

from .extra import EXTRA, require

require("flwr")

from .api import federate  # noqa: E402  (after the check: api's callees import Flower)
from .request import FederateRequest, FederationRequest  # noqa: E402

__all__ = ["EXTRA", "FederateRequest", "FederationRequest", "federate", "require"]
