"""Scoring new recordings and labelled splits with a trained model (predict and eval)."""
