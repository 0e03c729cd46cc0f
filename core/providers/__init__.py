"""Model providers over HTTP: an OpenAI-compatible client (chat completions, embeddings), the
``openai:MODEL`` and ``http:URL`` SUT adapters, and the usage their replies report.  See
``docs/providers.md``."""
