"""Edge runtime: serves a verified instruction packet with onnxruntime on CPU, offline. Never imports torch."""
