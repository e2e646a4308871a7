"""The voice runtime: answered calls talk with their assistant over the provider's media stream.

`config` resolves what a call runs with (pure), `repository` reads and writes the rows,
`service` ties them to transactions, `media` serves the WebSocket the answer documents point
at, and `pipeline` (Pipecat, the `voice` extra) runs the conversation. See docs/voice.md.
"""
