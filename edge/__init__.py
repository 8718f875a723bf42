"""Edge agent: Modbus polling, decoding, disk spool, MQTT publishing."""
