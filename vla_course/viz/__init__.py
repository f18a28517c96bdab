"""Figures, animations and widgets. Draws the arrays it is given; never imports models or the sim."""
