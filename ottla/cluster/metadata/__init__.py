"""Metadata records and the immutable image built from them."""
