"""The SME-MET Edge gateway: ingest, verification, durable outbox, processing
chains and routes to partners."""
