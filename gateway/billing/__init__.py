"""Billing: admission (rate limits, budgets), metering each request into one priced usage record, and the
durable ledger."""
