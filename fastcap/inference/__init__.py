"""Using a trained checkpoint on images: captions of new pictures, contact sheets."""
