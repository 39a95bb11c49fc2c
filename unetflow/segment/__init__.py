"""From boundaries to objects: one instance segmentation of a whole volume, block by block.

`plan` (blocks, halo, groups), `fragments` (a seeded watershed per block, fragments named by their seeds),
`graph` (edges additive across blocks), `agglomerate` and `hierarchy` (the global step), `run` (the
resumable steps and their journals, `store`), `pipeline` (the whole, the pyramid, the summary), `source`
(the probability volume read in place), `submission` (the ISBI 2012 file); and `cells` (the per-frame
cells of 2-D time-lapses: one id per cell in each frame, the cell tracking runs). NumPy, SciPy,
scikit-image and bioimage-cpp: no torch (it runs on any probability map, ours or another's).
"""
