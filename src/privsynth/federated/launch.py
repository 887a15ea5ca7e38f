"""Real processes on this machine: one SuperLink and N SuperNodes on 127.0.0.1, then ``flwr run``.

Everything here is Flower's own executables (``flower-superlink``, ``flower-supernode``, ``flwr``);
this module only starts them, waits, and stops them. Without certificates they run with
``--insecure`` (plain HTTP) and bind to the loopback interface only; with ``tls=(ca, cert, key)``
the SuperLink serves TLS and the SuperNodes and ``flwr`` verify it against ``ca``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Iterator

from ..errors import ConfigError
from ..orchestrate.distributed import free_port

CONNECTION = "privsynth-local"


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return repr(v) if isinstance(v, (int, float)) else json.dumps(str(v))


CLIENT_APP = "privsynth.federated.client_app:app"
_PYPROJECT = """[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "privsynth-federated"
version = "0.1.0"
dependencies = []

[tool.flwr.app]
publisher = "privsynth"

[tool.flwr.app.components]
serverapp = "privsynth.federated.server_app:app"
clientapp = "{}"

[tool.flwr.app.config]
"""


def write_app(folder: Path, run_config: dict) -> Path:
    """A minimal Flower app folder: pyproject with the components and this run's config.

    The code is not copied: the SuperLink's ServerApp and the SuperNodes' ClientApps import the
    installed ``privsynth`` package (see docs/federated.md for a real deployment).
    """
    folder.mkdir(parents=True, exist_ok=True)
    config = "".join(f"{k} = {_toml_value(v)}\n" for k, v in run_config.items())
    (folder / "pyproject.toml").write_text(_PYPROJECT.format(CLIENT_APP) + config)
    return folder


def _env(flwr_home: Path) -> dict:
    import privsynth

    env = dict(os.environ)
    src = str(Path(privsynth.__file__).resolve().parents[1])
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["FLWR_HOME"] = str(flwr_home)
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def _start(cmd: list[str], log: Path, env: dict) -> subprocess.Popen:
    with open(log, "ab") as fh:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )


def _stop(procs: list[subprocess.Popen]) -> None:
    """SIGTERM each process group we started (Flower spawns helpers inside it), then SIGKILL."""
    for p in procs:
        if p.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
    deadline = time.time() + 5
    for p in procs:
        with suppress(subprocess.TimeoutExpired):
            p.wait(max(0.1, deadline - time.time()))
    for p in procs:
        with suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGKILL)
        p.wait()


@contextmanager
def local_deployment(
    node_configs: list[dict], workdir: Path, tls: tuple[str, str, str] | None = None
) -> Iterator[dict]:
    """Start a SuperLink and one SuperNode per node config; yield the environment ``flwr`` reaches
    them with; stop them all."""
    home = workdir / "flwr-home"
    home.mkdir(parents=True, exist_ok=True)
    env = _env(home)
    port = free_port()
    link = ["flower-superlink", "--port", str(port), "--disable-runtime-dependency-installation"]
    conn = [f"[superlink.{CONNECTION}]", f'address = "127.0.0.1:{port}"']
    node_sec = ["--insecure"]
    if tls is None:
        link.append("--insecure")
        conn.append("insecure = true")
    else:
        ca, cert, key = (str(Path(p).resolve()) for p in tls)
        for p in (ca, cert, key):
            if not Path(p).exists():
                raise ConfigError(
                    f"TLS file '{p}' not found; pass existing files as --tls CA CERT KEY"
                )
        link += ["--ssl-ca-certfile", ca, "--ssl-certfile", cert, "--ssl-keyfile", key]
        conn.append(f'root-certificates = "{ca}"')
        node_sec = ["--root-certificates", ca]
    (home / "config.toml").write_text(
        f'[superlink]\ndefault = "{CONNECTION}"\n\n' + "\n".join(conn) + "\n"
    )
    procs: list[subprocess.Popen] = []
    try:
        procs.append(_start(link, workdir / "superlink.log", env))
        node = ["flower-supernode", *node_sec, "--superlink", f"127.0.0.1:{port}", "--port"]
        for i, nc in enumerate(node_configs):
            node_cfg = " ".join(f"{k}={_toml_value(v)}" for k, v in nc.items())
            cmd = [*node, str(free_port()), "--node-config", node_cfg]
            procs.append(_start(cmd, workdir / f"supernode-{i}.log", env))
        yield env
    finally:
        _stop(procs)


def flwr_run(app_dir: Path, env: dict, log: Path, timeout: float) -> int:
    """``flwr run APP privsynth-local --stream``: submit the run and follow it to the end."""
    p = _start(["flwr", "run", str(app_dir), CONNECTION, "--stream"], log, env)
    try:
        return p.wait(timeout)
    except subprocess.TimeoutExpired:
        _stop([p])
        raise ConfigError(
            f"the federated run did not finish within {timeout:.0f}s; see "
            f"{log.parent} for the SuperLink/SuperNode logs"
        ) from None
