"""AI jobs: knowledge documents, voice-to-action and the safety console, on OpenAI or fully offline."""
