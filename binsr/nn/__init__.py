"""The network: the paper's pieces as torch modules, the models built from them, and their files.

    config        the model's one description: Binarization, Attention and ModelConfig; versions and migrations
    binary        RSign, RPReLU, BinaryConv2d and the sign and its backward: equations (1)-(7)
    attention     squeeze-and-excitation, spatial and pixel attention, and their gate forms
    blocks        the BBCU unit (8) and the attentive binary unit (12), (13); blocks and residual blocks
    models        EDSR (14) and SRResNet, the registry `MODELS` and `create_model`
    summary       parameters, operations and bit operations of a model (15), (16)
    propagation   the signal through a model's body, block by block (what distillation and notebook 06 read)
    checkpoint    a model's file: save atomically, load with weights_only, the shipped models in assets/

Imports: torch, numpy and `binsr.base`. Nothing here knows about images, the XNOR engine or training.
"""
