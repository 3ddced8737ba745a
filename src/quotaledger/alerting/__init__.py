"""Balance alerts on the server: thresholds per account and key, and their states."""
