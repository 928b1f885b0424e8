"""The console's domain logic. Nothing here imports Textual or Rich (tests/test_layering.py checks)."""
