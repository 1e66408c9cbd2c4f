"""The sans-I/O protocol core: builds requests and parses responses; no sockets, sleeps or clocks."""
