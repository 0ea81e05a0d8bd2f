"""GPU worker side: model loading, generation and video encoding. Never imports discord."""
