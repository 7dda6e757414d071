"""Anomaly detection for upwatch series: features, Isolation Forest models, backtest, live scoring."""
