"""Media bytes to upright RGB frames: decoding, orientation and perceptual hashes (no Beam, no stores)."""
