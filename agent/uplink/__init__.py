"""The MQTT link: the typed contract (messages, topics), the publisher into the outbox, and the paho client."""
