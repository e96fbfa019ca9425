"""Request examples and the end-to-end demo (``python -m examples.demo``, what ``make demo`` runs)."""
