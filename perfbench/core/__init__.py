"""Errors, secret redaction and the one-line argument parser: the leaf every package may import."""
