"""Cross-cutting helpers: UTC timestamps in the contract's format, logging set-up, process tuning."""
