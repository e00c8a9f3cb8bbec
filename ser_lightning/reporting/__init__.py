"""Human-readable run summaries, reports and plots."""
