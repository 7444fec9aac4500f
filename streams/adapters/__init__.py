"""One adapter per channel: native payload -> canonical OrderEvent, or a Rejected with a reason."""
