"""Helpers that reproduce the official GLEE parity fixture (weights, inputs) for tests."""
