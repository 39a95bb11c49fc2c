"""The paper's network and what describes it: the valid-convolution U-Net (`unet`), its weighted loss and
decision threshold (`loss`), and its files: PyTorch checkpoints (`checkpoint`) and bioimage.io packages read
back (`package`)."""
