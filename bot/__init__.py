"""Discord side of videobot; never imports torch or diffusers."""
