"""Objects from the net's probability: one id per cell in each frame (`cells`).

NumPy, SciPy and scikit-image only, never torch: it runs on any probability map, unetflow's or another
tool's, where the prediction was made.
"""
