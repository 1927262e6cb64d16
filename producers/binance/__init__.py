"""Binance spot market data: live streams (WebSocket) and history (REST klines)."""
