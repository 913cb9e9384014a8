"""DNS I/O for routing: MX and A/AAAA lookups (dnspython) feeding the pure MX planner."""
