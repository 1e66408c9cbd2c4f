"""Adapters that let a token source authorize requests, httpx, pyFirecREST and globus-sdk calls."""
