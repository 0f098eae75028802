"""Example sdp verifier plugin (see verifier.py)."""
