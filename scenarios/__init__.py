"""What-if scenarios: definitions, the runner, synthetic feeds and comparisons."""
