"""Monitoring: drift and performance alarms, liveness and data-quality checks, the
``mlpred check`` run, alert state and webhooks."""
