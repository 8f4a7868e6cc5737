"""Storage on the unit: the durable outbox (the only way out) and the recorder that writes alarm media."""
