"""Which tier answers: per-class routes, live statistics, circuit breakers, and one model turn across tiers with
first-token hedging and failover (hedge)."""
