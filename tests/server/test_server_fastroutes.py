"""The hot endpoints, called without starlette's router (server/fastroutes.py), answer as through
it: a bug is a plain 500 and the server goes on, other methods and HEAD still go through starlette
(405 with Allow, HEAD of discovery), and the access log names the route."""

from __future__ import annotations

import logging

import httpx

from keyturn.server.device_flow import DeviceGrant
from keyturn.server.runner import ServerThread
from keyturn.server.storage.sqlite import SQLiteStorage
from tests.support.serverkit import make_config


class BrokenGrants(SQLiteStorage):
    """Fault injection: storing a device grant fails with a bug, not an outage."""

    broken = True

    def create_device_grant(self, grant: DeviceGrant) -> bool:
        if self.broken:
            raise RuntimeError("injected bug")
        return super().create_device_grant(grant)


def test_a_bug_in_a_fast_route_is_a_plain_500_and_the_server_goes_on(tmp_path, caplog):
    storage = BrokenGrants(tmp_path / "db.sqlite3")
    with ServerThread(make_config(), storage=storage) as running:
        client_id = next(iter(running.config.clients))
        with caplog.at_level(logging.INFO, logger="keyturn.server.access"):
            answer = httpx.post(f"{running.issuer}/device_authorization",
                                data={"client_id": client_id})
        assert answer.status_code == 500 and answer.text == "Internal Server Error"
        assert "injected bug" not in answer.text
        assert any('"POST /device_authorization" 500' in record.getMessage()
                   for record in caplog.records)
        storage.broken = False
        again = httpx.post(f"{running.issuer}/device_authorization", data={"client_id": client_id})
        assert again.status_code == 200 and again.json()["device_code"]


def test_other_methods_and_head_still_go_through_starlette(tmp_path):
    with ServerThread(make_config(), data_dir=tmp_path) as running:
        wrong = httpx.get(f"{running.issuer}/token")
        assert wrong.status_code == 405 and wrong.headers["allow"] == "POST"
        head = httpx.head(f"{running.issuer}/.well-known/openid-configuration")
        assert head.status_code == 200 and head.headers["content-type"] == "application/json"
        assert httpx.get(f"{running.issuer}/.well-known/openid-configuration").json()["issuer"] \
            == running.issuer
