"""ReViT's host compiler: a bundle becomes ``revit_top``'s DRAM window and descriptor program."""
