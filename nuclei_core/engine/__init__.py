"""The whole-slide engine: a slide read through large_image (slide), its tissue (tissue) and the region asked for
(region) cut into tiles with a halo (tiling), any model run over them (analysis), nuclei kept once across seams
(merge), and progress for people and for slicer_cli_web (progress)."""
