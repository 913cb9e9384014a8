"""The Avro contracts (`*.avsc`), shipped inside the package as `relaystream.schemas`."""
