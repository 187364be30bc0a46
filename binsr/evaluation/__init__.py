"""Running models on images: the benchmark tables, upscaling photos, and the engine's speed.

    evaluate   PSNR/SSIM over the benchmark sets (bicubic baseline included), `upscale` of one image
    photos     `binsr upscale`: a folder of photos, any image mode, written atomically
    bench      the XNOR engine against torch: per layer, per stage and for a whole upscale

Imports: `binsr.base`, `binsr.nn`, `binsr.data` and `binsr.engine`.
"""
