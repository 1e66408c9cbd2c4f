"""keyturn's server on its in-memory storage, for server_throughput.py's "memory" row.

    python benchmarks/_memory_server.py CONFIG.toml N_REFRESH_TOKENS TOKENS.json

oidc-provider in the benchmark keeps everything in a JavaScript Map (tests/provider/provider.mjs);
this row keeps keyturn's state in a dict too (storage/memory.py, the storage of the tests), so
the two differ in the request handling only. Not a way to run a site: nothing survives a restart
and no second process shares it. The same app and uvicorn as ``keyturn serve`` (ServerThread),
with the same access log on stderr. Prints the issuer URL on its first stdout line, after the
refresh tokens were minted into the storage and written to TOKENS.json; runs until terminated.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
from pathlib import Path

from server_throughput import mint_keyturn_tokens

from keyturn.server.config import load_config
from keyturn.server.runner import ServerThread
from keyturn.server.storage.memory import MemoryStorage


def main() -> None:
    config_path, count, tokens_path = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    # As serve() sets it up: the access log's lines go to stderr.
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    storage = MemoryStorage()
    tokens_path.write_text(json.dumps(mint_keyturn_tokens(storage, count)))
    with ServerThread(load_config(config_path), storage=storage) as running:
        print(running.issuer, flush=True)
        signal.sigwait({signal.SIGTERM, signal.SIGINT})


if __name__ == "__main__":
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    main()
