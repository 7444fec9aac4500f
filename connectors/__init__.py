"""Channel connectors: take marketplace payloads in and produce them to raw topics as received."""
