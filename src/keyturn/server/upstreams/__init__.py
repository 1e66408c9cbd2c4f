"""Sign-in on the ``/device`` page through an upstream OpenID provider (the site's own).

The person types the user code, presses "Sign in with NAME", signs in at the upstream (the
authorization code flow with PKCE S256, ``state``, ``nonce`` and RFC 9207 ``iss``, keyturn being a
confidential client whose redirect is ``<issuer>/device/callback``), and comes back to the same
Approve/Deny step as a local user. One module per job:

* :mod:`.config` reads ``[upstreams.NAME]`` into frozen dataclasses;
* :mod:`.flow` is the part without I/O: the login kept in the storage while the person is away,
  the claim mapping and the allow-list;
* :mod:`.client` talks to the upstream (discovery, token request, JWKS, userinfo), with the
  client side's ``protocol/`` code;
* :mod:`.calls` runs those flows through the client side's transport, within a deadline.

The two HTTP routes (the button, the callback) are :mod:`keyturn.server.upstream_routes` and the
press limit :mod:`keyturn.server.upstream_presses`: they need the server, its pages and its
configuration, which import this package, so they sit beside it (no import cycle).
"""
