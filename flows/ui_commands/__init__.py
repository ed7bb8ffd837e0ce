"""The justIN UI-service commands as parameterised flows, run by hand (no schedule)."""
