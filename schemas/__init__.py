"""The contract: Avro schemas, codec, typed record views, topic registry. Imports nothing of ours."""
