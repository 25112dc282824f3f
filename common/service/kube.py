"""The Kubernetes API client both halves use: where its configuration comes from, and who
it says is asking."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
from pathlib import Path
from typing import Any

DISTRIBUTION = "weave-npc-py"


def kube_api_client(kubeconfig: str | None, program: str) -> Any:
    """``--kubeconfig``, else the in-cluster service account, else ``$KUBECONFIG``, else
    ``~/.kube/config``; requests say they come from ``program`` (see :func:`user_agent`)."""
    from kubernetes import client, config

    if kubeconfig:
        api = config.new_client_from_config(config_file=kubeconfig)
    elif os.environ.get("KUBERNETES_SERVICE_HOST"):
        configuration = client.Configuration()
        config.load_incluster_config(client_configuration=configuration)
        api = client.ApiClient(configuration)
    else:
        path = os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")
        api = config.new_client_from_config(config_file=path)
    api.user_agent = user_agent(program)
    return api


def user_agent(program: str) -> str:
    """``weave-npc/0.1.0 (linux/amd64) python/3.11.2``: who is asking, in the API server's
    audit log and metrics (client-go's form), instead of the generated client's name."""
    try:
        version = importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    machine = platform.machine().lower()
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)
    return f"{program}/{version} ({sys.platform}/{arch}) python/{platform.python_version()}"
