"""Deployment: a federation across real processes, as a library.

The server is given the server's half of an app (:class:`~fedhive.server.app.ServerApp`:
the initial model, a central evaluation) and a :class:`Deployment` (strategy, rounds,
seed, ``[server]`` settings, secure aggregation); each client process is given the
clients' half (:class:`~fedhive.client.app.ClientApp`). ``fedhive server`` and
``fedhive client`` only parse a config and flags into these and render the run.

```python
served = serve_server(ServerApp(initial_weights=w0), Deployment(strategy=fedavg(),
                      strategy_name="fedavg", rounds=10), state_dir=Path("state"),
                      tls=TLSConfig.from_dir("pki/server"))
serve_client(ClientApp(client_fn=make_client), client_id="client-0000",
             server="host:8443", tls=TLSConfig.from_dir("pki/client-0000"), stop=stop)
```
"""

from fedhive.client.app import ClientApp
from fedhive.deployment.client import serve_client
from fedhive.deployment.server import (
    DeployedServer,
    Deployment,
    Served,
    serve_server,
    server_transport,
)
from fedhive.server.app import ServerApp
from fedhive.server.settings import ServerSection

__all__ = [
    "ClientApp",
    "DeployedServer",
    "Deployment",
    "Served",
    "ServerApp",
    "ServerSection",
    "serve_client",
    "serve_server",
    "server_transport",
]
