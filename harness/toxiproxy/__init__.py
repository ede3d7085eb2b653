"""Built-in Toxiproxy-compatible fault proxy (server: standard library only) and the harness's client.

Run the server with `python -m harness.toxiproxy -host 127.0.0.1 -port 8474`; talk to any
Toxiproxy (built-in or real) with `harness.toxiproxy.client.ToxiproxyClient`. This package
imports nothing eagerly, so the server starts with nothing but python3.
"""
