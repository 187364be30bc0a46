"""Images and their scores: reading benchmark sets and photos, MATLAB bicubic resizing, PSNR and SSIM.

    images     image files in any mode read as RGB, the benchmark sets and their LR images, training patches
    imresize   MATLAB's imresize (bicubic, antialiased), bit-compatible with the published LR images
    metrics    PSNR and SSIM on the Y channel, as SR papers report them
    download   fetch the public benchmark sets into the folder layout `images` reads (never implicit)

Imports: numpy, Pillow, torch and `binsr.base`; not `binsr.nn`: these modules handle pixels, not models.
"""
