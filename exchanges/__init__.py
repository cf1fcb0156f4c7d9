"""Venue adapters behind one async interface: the paper exchange and OKX v5."""
