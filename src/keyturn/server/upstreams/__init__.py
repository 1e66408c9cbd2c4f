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
* :mod:`.routes` is the two HTTP routes (the button, the callback).
"""
