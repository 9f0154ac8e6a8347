"""Statistics over a run's saved predictions: bootstrap intervals and paired comparisons."""
