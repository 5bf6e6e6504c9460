"""Secure aggregation (Bonawitz et al. 2017, with Shamir recovery of dropouts): the aggregator learns only the sum.

Transport-free building blocks and the protocol's two roles:

- ``quantize.py``: clip floats to ``[-r, r]`` and map them to integers mod ``2^k`` (and back);
- ``masks.py``: mask vectors expanded with ChaCha20 from agreed secrets (pairwise, cancelling) and self seeds;
- ``shamir.py``: t-of-n shares of 32-byte secrets over GF(2^521 - 1);
- ``keys.py``: per-round X25519 key pairs, signed with the collaborator's fx certificate key, and their checks;
- ``client.py`` / ``server.py``: the four stages (advertise keys, share keys, masked input, unmask).
"""
