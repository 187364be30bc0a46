"""The 1-bit engine: binary convolutions by XNOR and popcount on packed bits, bit-exact with the float model.

    packing         the packed format: activation maps with a +1 border, packed weights (`PackedConv`)
    xnor            the kernel choice (`Kernel`, `setup`) and the checked calls into it
    xnor_portable   the portable kernels (numba), for any CPU
    native          the C kernels (`xnor_native.c`): CPU detection, build, cache and the one struct they take
    runtime         a packed model as a program of ops, and the `.binsr` file it is stored in
    export          a torch model turned into that program (`pack_model`, `export_model`)
    tiling          large images in tiles with the same pixels as one pass
    inference       which engine runs a model where users run one: "auto", "xnor" or "torch"

Imports: numpy, torch, numba (portable kernel only), `binsr.base` and `binsr.nn`.
"""
