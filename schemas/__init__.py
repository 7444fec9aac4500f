"""The contract: Avro schemas, their codec, typed record views and the topic registry. Imports nothing of ours."""
