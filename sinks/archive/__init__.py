"""Every price observation archived to S3 as gzip JSON lines, and replayed from there."""
