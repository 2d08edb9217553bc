"""Development tools: the embedded broker, the simulator, replay and the demo."""
