"""HS_SECKEY secrets: sealed at rest with a key kept outside the database (``vault``), the
older hashed form still checked (``legacy``), never shown to anyone."""
