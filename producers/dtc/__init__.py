"""Sierra Chart through the DTC protocol: live market data and history."""
