"""Evaluation: scoring predictions against ground truth."""
