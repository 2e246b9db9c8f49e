"""Deformable-attention and other custom ops."""
