"""The upstream feed: sources by format, HTTP requests with retries, the feed's models and exact JSON."""
