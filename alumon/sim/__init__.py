"""Plant simulator: a pymodbus TCP server per device serving physically plausible values."""
