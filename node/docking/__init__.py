"""Docking with the top-level node: registering this node's prefixes upstream."""
